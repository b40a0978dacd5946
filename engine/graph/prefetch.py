"""Read ahead on a thread: decompression and hashing (C code that releases the GIL) overlap
with the unpacker's syscalls on another core."""
from __future__ import annotations

import queue
import threading
from types import TracebackType

from engine.graphdriver.unpack import Source

_END = b""


class Prefetch:
    """`read(n)` from `src` through a bounded queue filled by a background thread."""

    def __init__(self, src: Source, *, chunk: int = 1 << 20, depth: int = 8) -> None:
        self._src = src
        self._chunk = chunk
        self._q: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._stop = threading.Event()
        self._buf = b""
        self._eof = False
        self._thread = threading.Thread(target=self._run, name="layer-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._src.read(self._chunk)
                if not self._put(data) or not data:
                    return
        except BaseException as exc:  # handed to the reader, which re-raises it
            self._put(exc)

    def read(self, n: int = -1, /) -> bytes:
        if not self._buf:
            if self._eof:
                return _END
            item = self._q.get()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            if not item:
                self._eof = True
                return _END
            self._buf = item
        if n < 0 or n >= len(self._buf):
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def drain(self) -> None:
        while self.read(self._chunk):
            pass

    def close(self) -> None:
        """Stop the thread (also when the reader gave up early) and wait for it."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
