"""CRI container log files: `<RFC3339Nano> <stream> <F|P> <content>` per line.

A line longer than 16 KiB is cut into P (partial) records ending in one F (full) record; a
final line without a newline is written as P when the stream closes. When the disk is full
the record is dropped and counted (the container is never blocked on its log).
"""
from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

MAX_LINE = 16 * 1024


def timestamp(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


class CriLogWriter:
    def __init__(self, path: Path, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.path = path
        self._clock = clock
        self._pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.dropped = 0
        self._fd = -1
        self.reopen()

    def reopen(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                           0o640)

    def write(self, stream: str, data: bytes) -> None:
        buf = self._pending[stream] + data
        while True:
            nl = buf.find(b"\n", 0, MAX_LINE + 1)
            if nl >= 0:
                self._record(stream, b"F", content=buf[:nl])
                buf = buf[nl + 1:]
            elif len(buf) > MAX_LINE:
                self._record(stream, b"P", content=buf[:MAX_LINE])
                buf = buf[MAX_LINE:]
            else:
                break
        self._pending[stream] = buf

    def close_stream(self, stream: str) -> None:
        """The stream ended: a pending line without newline becomes a P record."""
        if self._pending[stream]:
            self._record(stream, b"P", content=self._pending[stream])
            self._pending[stream] = b""

    def close(self) -> None:
        for stream in self._pending:
            self.close_stream(stream)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _record(self, stream: str, tag: bytes, *, content: bytes) -> None:
        line = b"%s %s %s %s\n" % (timestamp(self._clock()).encode(), stream.encode(), tag,
                                    content)
        try:
            os.write(self._fd, line)
        except OSError as e:
            if e.errno not in {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}:
                raise
            self.dropped += 1
