"""CRI container log files: `<RFC3339Nano> <stream> <P|F> <text>` lines, read back for
`kubectl logs` with --tail, --since, --timestamps, --previous and -f."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

from kubelet_py.errors import KubeletError
from kubelet_py.pods.logrotate import rotated_files

FOLLOW_POLL = 0.2


class LogError(KubeletError):
    pass


@dataclasses.dataclass(frozen=True)
class LogOptions:
    tail_lines: int | None = None
    since: dt.datetime | None = None
    timestamps: bool = False
    follow: bool = False
    limit_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class LogLine:
    time: dt.datetime
    stream: str
    partial: bool
    text: bytes
    raw_time: str


def parse_line(line: bytes) -> LogLine | None:
    """One CRI log line; None for a malformed one."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    stamp = parts[0].decode(errors="replace")
    try:
        # Python parses at most microseconds: cut the nanoseconds' extra digits.
        head, _, frac = stamp.rstrip("Z").partition(".")
        when = dt.datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00" if frac
                                         else f"{head}+00:00")
    except ValueError:
        return None
    text = parts[3] if len(parts) > 3 else b""
    return LogLine(time=when, stream=parts[1].decode(), partial=parts[2] == b"P", text=text,
                   raw_time=stamp)


def render(line: LogLine, options: LogOptions) -> bytes:
    body = line.text + (b"" if line.partial else b"\n")
    return (line.raw_time.encode() + b" " + body) if options.timestamps else body


def select(lines: list[LogLine], options: LogOptions) -> list[LogLine]:
    if options.since is not None:
        lines = [ln for ln in lines if ln.time >= options.since]
    if options.tail_lines is not None:
        # Count full lines: a partial line belongs to the full line that ends it.
        complete = 0
        start = len(lines)
        for i in range(len(lines) - 1, -1, -1):
            if not lines[i].partial:
                if complete == options.tail_lines:
                    break
                complete += 1
            start = i
        lines = lines[start:] if options.tail_lines > 0 else []
    return lines


def log_file(directory: Path, container: str, attempt: int) -> Path:
    return directory / container / f"{attempt}.log"


def _parse_all(data: bytes) -> list[LogLine]:
    return [ln for ln in map(parse_line, data.splitlines(keepends=True)) if ln is not None]


def _tail_lines(files: list[Path], current: bytes, tail: int) -> list[LogLine]:
    """Enough lines for --tail, newest file first: rotated files are read only when the
    live one holds fewer complete lines than asked for."""
    lines = _parse_all(current)
    for older in reversed(files):
        if sum(1 for ln in lines if not ln.partial) > tail:
            break
        try:
            lines = _parse_all(older.read_bytes()) + lines
        except FileNotFoundError:
            continue  # pruned meanwhile
    return lines


async def stream_log(path: Path, options: LogOptions, *,
                     running: Callable[[], Awaitable[bool]] | None = None
                     ) -> AsyncGenerator[bytes, None]:
    """Yield the selected log as bytes, rotated files (`<log>.<time>`) first; with
    follow, keep yielding until the container stops (`running` answers False) and the
    file is drained, moving on to the new file when the log is rotated meanwhile."""
    try:
        live = path.open("rb")
    except FileNotFoundError as exc:
        raise LogError(f"no log file {path.name} for this container") from exc
    try:
        data = live.read()
        rotated = rotated_files(path)
        if options.tail_lines is not None:
            batches = [_tail_lines(rotated, data, options.tail_lines)]
        else:
            batches = []
            for older in rotated:
                try:
                    batches.append(_parse_all(older.read_bytes()))
                except FileNotFoundError:
                    continue
            batches.append(_parse_all(data))
        sent = 0
        for batch in batches:
            for line in select(batch, options):
                chunk = render(line, options)
                if options.limit_bytes is not None and \
                        sent + len(chunk) > options.limit_bytes:
                    yield chunk[: options.limit_bytes - sent]
                    return
                sent += len(chunk)
                yield chunk
        if not options.follow:
            return
        pending = b""
        while True:
            more = live.read()
            if not more and _replaced(path, live):
                more = live.read()  # the last bytes written before the runtime reopened
                if not more:
                    live.close()
                    live = path.open("rb")  # rotated and drained: go on in the new file
                    continue
            if more:
                pending += more
                *full, pending = pending.split(b"\n")
                for raw in full:
                    fresh = parse_line(raw + b"\n")
                    if fresh is not None and (options.since is None or
                                              fresh.time >= options.since):
                        yield render(fresh, options)
                continue
            if running is not None and not await running():
                return
            await asyncio.sleep(FOLLOW_POLL)
    finally:
        live.close()


def _replaced(path: Path, live: BinaryIO) -> bool:
    try:
        return path.stat().st_ino != os.fstat(live.fileno()).st_ino
    except FileNotFoundError:
        return False  # between the rename and the runtime reopening it
