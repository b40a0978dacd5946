"""Deterministic image layers: tar archives built from a list of entries, then compressed.

A layer is described by `Entry` values (files, directories, symlinks, hardlinks and the
two OCI whiteout forms) so that the same description always gives the same bytes: entries
are sorted by path (parents before children), every mtime is fixed, owner names are empty,
the tar format is PAX-free USTAR/GNU as Python writes it, and gzip headers carry mtime 0.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import posixpath
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import zstandard

# Every entry in every layer carries this modification time (2000-01-01T00:00:00Z), so
# layer digests do not depend on when or where the image was built.
FIXED_MTIME = 946684800

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


class Kind(Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"


class Compression(Enum):
    """How a layer blob is stored; the value is the media-type suffix of OCI layers."""

    NONE = ""
    GZIP = "+gzip"
    ZSTD = "+zstd"


@dataclass(frozen=True)
class Entry:
    """One tar member. `path` is relative to the root, without a leading slash."""

    path: str
    kind: Kind
    mode: int = 0o644
    data: bytes = b""
    target: str = ""
    uid: int = 0
    gid: int = 0

    def __post_init__(self) -> None:
        norm = posixpath.normpath(self.path)
        if self.path.startswith("/") or norm != self.path or norm.startswith(".."):
            raise ValueError(f"layer entry path must be relative and normalised: {self.path!r}")
        if self.kind in (Kind.SYMLINK, Kind.HARDLINK) and not self.target:
            raise ValueError(f"{self.kind.value} entry {self.path!r} needs a target")


def file(path: str, data: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, Kind.FILE, mode=mode, data=data, uid=uid, gid=gid)


def directory(path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, Kind.DIR, mode=mode, uid=uid, gid=gid)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, Kind.SYMLINK, mode=0o777, target=target)


def hardlink(path: str, target: str) -> Entry:
    """A hardlink to `target`, another path (relative to the root) in the same layer."""
    return Entry(path, Kind.HARDLINK, mode=0o755, target=target)


def whiteout(path: str) -> Entry:
    """Delete `path` (from lower layers) in the layer this entry belongs to."""
    parent, name = posixpath.split(path)
    return file(posixpath.join(parent, WHITEOUT_PREFIX + name), b"")


def opaque(directory_path: str) -> Entry:
    """Hide everything lower layers put in `directory_path`."""
    return file(posixpath.join(directory_path, OPAQUE_MARKER), b"")


def _sort_key(entry: Entry) -> tuple[bool, tuple[str, ...]]:
    # Hardlinks go last (their targets must precede them); otherwise component-wise order,
    # which puts a directory before its children and keeps siblings sorted.
    return entry.kind is Kind.HARDLINK, tuple(entry.path.split("/"))


def _tarinfo(entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path + ("/" if entry.kind is Kind.DIR else ""))
    info.mtime = FIXED_MTIME
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    if entry.kind is Kind.FILE:
        info.type = tarfile.REGTYPE
        info.size = len(entry.data)
    elif entry.kind is Kind.DIR:
        info.type = tarfile.DIRTYPE
    elif entry.kind is Kind.SYMLINK:
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    else:
        info.type = tarfile.LNKTYPE
        info.linkname = entry.target
    return info


def build_tar(entries: Iterable[Entry]) -> bytes:
    """The uncompressed tar of `entries`, sorted, byte-for-byte reproducible."""
    ordered = sorted(entries, key=_sort_key)
    seen: set[str] = set()
    for entry in ordered:
        if entry.path in seen:
            raise ValueError(f"duplicate layer entry {entry.path!r}")
        if entry.kind is Kind.HARDLINK and entry.target not in seen:
            raise ValueError(f"hardlink {entry.path!r} points at {entry.target!r}, "
                             "which must come earlier in the same layer")
        seen.add(entry.path)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for entry in ordered:
            info = _tarinfo(entry)
            tar.addfile(info, io.BytesIO(entry.data) if entry.kind is Kind.FILE else None)
    return out.getvalue()


def compress(data: bytes, compression: Compression, *, level: int | None = None) -> bytes:
    """Compress deterministically: gzip with mtime 0 and no file name; zstd single frame."""
    if compression is Compression.NONE:
        return data
    if compression is Compression.GZIP:
        return gzip.compress(data, compresslevel=6 if level is None else level, mtime=0)
    cctx = zstandard.ZstdCompressor(level=3 if level is None else level, write_checksum=True,
                                    write_content_size=True, threads=0)
    return bytes(cctx.compress(data))


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Layer:
    """A built layer: the stored blob and the digest of its uncompressed tar (diff_id)."""

    blob: bytes
    diff_id: str
    compression: Compression
    tar_size: int
    created_by: str = field(default="")

    @property
    def digest(self) -> str:
        return sha256_digest(self.blob)

    @property
    def size(self) -> int:
        return len(self.blob)


def build_layer(entries: Sequence[Entry], *, compression: Compression = Compression.GZIP,
                created_by: str = "", level: int | None = None) -> Layer:
    tar = build_tar(entries)
    return Layer(blob=compress(tar, compression, level=level), diff_id=sha256_digest(tar),
                 compression=compression, tar_size=len(tar), created_by=created_by)
