"""The content store: immutable blobs addressed by digest.

A blob is written to `ingest/<random>`, hashed and counted on the way in, verified against the
expected digest and size, fsynced and only then renamed to `blobs/sha256/<hex>`. A blob is
therefore either absent or complete; `clean_ingest()` removes what a crash left behind.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO

from engine.errors import NotFound, ResourceExhausted
from engine.graph import digest as dg
from engine.graph.errors import DigestMismatch, SizeMismatch, TruncatedContent, from_os_error


class Writer:
    """Ingest one blob; `commit()` verifies and publishes it, `abort()` discards it."""

    def __init__(self, store: ContentStore, expected: str, size: int | None) -> None:
        self._store = store
        self.expected = dg.validate(expected)
        self.size = size
        self.offset = 0
        self._hash = hashlib.sha256()
        self._tmp = store.ingest_dir / f"{dg.hex_of(expected)[:16]}-{secrets.token_hex(6)}"
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._done = False

    def write(self, data: bytes | memoryview) -> None:
        if self.size is not None and self.offset + len(data) > self.size:
            raise SizeMismatch(f"blob {self.expected}: more than the {self.size} bytes expected")
        self._hash.update(data)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            raise from_os_error(exc, f"writing blob {self.expected}") from None
        self.offset += len(data)

    def commit(self) -> str:
        if self.size is not None and self.offset != self.size:
            raise TruncatedContent(
                f"blob {self.expected}: got {self.offset} of {self.size} bytes")
        got = "sha256:" + self._hash.hexdigest()
        if got != self.expected:
            raise DigestMismatch(f"blob {self.expected}: content hashes to {got}")
        try:
            os.fsync(self._fd)
            final = self._store.path(self.expected)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, final)
            self._done = True
            os.close(self._fd)
        except OSError as exc:
            raise from_os_error(exc, f"committing blob {self.expected}") from None
        return got

    def abort(self) -> None:
        if not self._done:
            self._done = True
            os.close(self._fd)
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.abort()


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blob_dir = root / "blobs" / "sha256"
        self.ingest_dir = root / "ingest"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.blob_dir / dg.hex_of(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not in the content store") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not in the content store") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def writer(self, expected: str, size: int | None) -> Writer:
        return Writer(self, expected, size)

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store `data`; with `expected`, verify it is what was asked for."""
        want = expected or dg.of_bytes(data)
        if self.exists(want):
            if dg.of_bytes(data) != want:
                raise DigestMismatch(f"blob {want}: content hashes to {dg.of_bytes(data)}")
            return want
        with self.writer(want, len(data)) as w:
            w.write(data)
            return w.commit()

    def ingest(self, src: IO[bytes], *, max_bytes: int) -> tuple[str, int]:
        """Store a stream whose digest is not known in advance; returns (digest, size)."""
        tmp = self.ingest_dir / f"unknown-{secrets.token_hex(8)}"
        h = hashlib.sha256()
        size = 0
        try:
            with tmp.open("xb") as out:
                while chunk := src.read(1 << 20):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ResourceExhausted(f"blob larger than {max_bytes} bytes")
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = "sha256:" + h.hexdigest()
            final = self.path(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            return digest, size
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[str]:
        for entry in os.scandir(self.blob_dir):
            yield "sha256:" + entry.name

    def clean_ingest(self) -> int:
        """Remove every unfinished ingest file (call only when no writer is open)."""
        count = 0
        for entry in os.scandir(self.ingest_dir):
            os.unlink(entry.path)
            count += 1
        return count
