"""Reading a layer blob as its uncompressed tar: decompress (gzip in C via zlib, zstd via
`zstandard`, or none, sniffed from the magic bytes), hash the output for the diff ID, and
stop a decompression bomb at a byte cap before it reaches the disk or memory."""
from __future__ import annotations

import hashlib
import zlib
from typing import BinaryIO, cast

import zstandard

from engine.errors import InvalidArgument, ResourceExhausted

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class LayerReader:
    """`read(n)` yields decompressed bytes; `diff_id()` once the stream is exhausted."""

    def __init__(self, raw: BinaryIO, *, max_bytes: int = 64 << 30) -> None:
        self._raw = raw
        self._max = max_bytes
        self.total = 0
        self._hash = hashlib.sha256()
        head = raw.read(CHUNK)
        if not head:
            raise InvalidArgument("layer blob is empty (0 bytes): not a tar archive")
        self._tail = b""
        self._zstd = None
        self._gz: zlib._Decompress | None = None
        if head.startswith(GZIP_MAGIC):
            self.compression = "gzip"
            self._gz = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._pending = head
        elif head.startswith(ZSTD_MAGIC):
            self.compression = "zstd"
            self._zstd = zstandard.ZstdDecompressor().stream_reader(
                cast(BinaryIO, _Prefixed(head, raw)), read_across_frames=True)
            self._pending = b""
        else:
            self.compression = "none"
            self._pending = head
        self._eof = False

    def read(self, n: int = -1, /) -> bytes:
        out = self._next(CHUNK if n < 0 else max(n, 1))
        if out:
            self.total += len(out)
            if self.total > self._max:
                raise ResourceExhausted(
                    f"layer expands beyond {self._max} bytes (decompression bomb?)")
            self._hash.update(out)
        return out

    def _next(self, n: int) -> bytes:
        if self._zstd is not None:
            try:
                return bytes(self._zstd.read(n))
            except zstandard.ZstdError as exc:
                raise InvalidArgument(f"layer: corrupt zstd stream: {exc}") from None
        if self._gz is None:
            if self._pending:
                out, self._pending = self._pending[:n], self._pending[n:]
                return out
            return self._raw.read(n)
        return self._gunzip(n)

    def _gunzip(self, n: int) -> bytes:
        gz = self._gz
        assert gz is not None
        while True:
            if gz.unconsumed_tail:
                data = gz.unconsumed_tail
            elif self._pending:
                data, self._pending = self._pending, b""
            else:
                data = b"" if self._eof else self._raw.read(CHUNK)
                if not data:
                    self._eof = True
                    if not gz.eof:
                        raise InvalidArgument("layer: gzip stream is truncated")
                    return b""
            try:
                out = gz.decompress(data, n)
            except zlib.error as exc:
                raise InvalidArgument(f"layer: corrupt gzip stream: {exc}") from None
            if gz.eof and gz.unused_data:
                # concatenated gzip members: start a new decompressor on the rest
                rest = gz.unused_data
                self._gz = gz = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._pending = rest
            if out:
                return out
            if gz.eof and not self._pending:
                tail = self._raw.read(CHUNK)
                if not tail:
                    return b""
                self._gz = gz = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._pending = tail

    def drain(self) -> None:
        """Read to the end (tar readers stop at the end-of-archive marker)."""
        while self.read(CHUNK):
            pass

    def diff_id(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class _Prefixed:
    """A file object that returns `head` before the rest of `raw`."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out, self._head = (self._head, b"") if n < 0 else (self._head[:n], self._head[n:])
            return out
        return self._raw.read(n)
