"""CRI log files: parse `<RFC3339Nano> <stream> <P|F>[:tags] <content>` lines, render them
as the container wrote them (P: a partial line, F: the end of one), tail and follow them,
also across ReopenContainerLog rotation."""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

STREAMS = (b"stdout", b"stderr")


@dataclasses.dataclass(frozen=True)
class Entry:
    timestamp: bytes
    stream: str  # "stdout" | "stderr"
    partial: bool
    content: bytes

    def rendered(self) -> bytes:
        return self.content if self.partial else self.content + b"\n"


class MalformedLine(ValueError):
    pass


def parse_line(line: bytes) -> Entry:
    """One physical line of a CRI log file (without its newline)."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in STREAMS:
        raise MalformedLine(f"not a CRI log line: {line[:80]!r}")
    tag = parts[2].split(b":", 1)[0]
    if tag not in (b"P", b"F"):
        raise MalformedLine(f"unknown CRI log tag {parts[2][:20]!r}")
    return Entry(parts[0], parts[1].decode(), tag == b"P", parts[3] if len(parts) == 4 else b"")


def parse(lines: Sequence[bytes]) -> list[Entry | bytes]:
    """Entries, with malformed lines kept as raw bytes (shown as they are)."""
    out: list[Entry | bytes] = []
    for line in lines:
        try:
            out.append(parse_line(line))
        except MalformedLine:
            out.append(line)
    return out


def tail(items: Sequence[Entry | bytes], n: int) -> list[Entry | bytes]:
    """The items making up the last `n` logical lines (a P... F run is one line)."""
    if n < 0:
        return list(items)
    if n == 0:
        return []
    ends = [i for i, it in enumerate(items) if not (isinstance(it, Entry) and it.partial)]
    if len(items) and (not ends or ends[-1] != len(items) - 1):
        ends.append(len(items) - 1)  # a trailing partial line counts as one
    if len(ends) <= n:
        return list(items)
    return list(items[ends[-n - 1] + 1:])


def render(item: Entry | bytes) -> tuple[str, bytes]:
    """(stream, bytes to write) for one item."""
    if isinstance(item, Entry):
        return item.stream, item.rendered()
    return "stdout", item + b"\n"


class Follower:
    """Yields complete physical lines of the log at `path` as they are written.

    It stops at end of file once `alive()` is False. When the file at `path` is replaced
    (rotation then ReopenContainerLog) or truncated, the old file is drained first and
    the new one read from its start.
    """

    def __init__(self, path: Path, *, alive: Callable[[], bool], poll_s: float = 0.2,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._path = path
        self._alive = alive
        self._poll_s = poll_s
        self._sleep = sleep

    def lines(self, start: int = 0) -> Iterator[bytes]:
        f: BinaryIO | None = self._open()
        if f is not None:
            f.seek(start)
        pending = b""
        draining = False
        try:
            while True:
                if f is not None:
                    data = f.read(1 << 16)
                    if data:
                        pending += data
                        *complete, pending = pending.split(b"\n")
                        yield from complete
                        continue
                replaced = self._replaced(f)
                if replaced:
                    if f is not None:
                        f.close()
                    f, pending = self._open(), b""
                    continue
                if draining:
                    if pending:
                        yield pending
                    return
                if not self._alive():
                    draining = True  # one more read: what was written before it stopped
                    continue
                self._sleep(self._poll_s)
        finally:
            if f is not None:
                f.close()

    def _open(self) -> BinaryIO | None:
        try:
            return self._path.open("rb")
        except FileNotFoundError:
            return None

    def _replaced(self, f: BinaryIO | None) -> bool:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return False  # rotated away and not reopened yet: keep waiting
        if f is None:
            return True
        ours = os.fstat(f.fileno())
        return (st.st_ino, st.st_dev) != (ours.st_ino, ours.st_dev) or st.st_size < f.tell()
