"""A small streaming tar reader (ustar, pax and GNU long names) tuned for layer unpacking.

It reads from any object with `read(n) -> bytes` (a short read is fine, `b""` is the end),
decodes one header at a time and copies file data straight to a file descriptor in large
slices, so that per-entry Python work stays small. Sparse files and other exotic entry types
are refused with InvalidArgument rather than guessed at.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Protocol

from engine.errors import InvalidArgument
from engine.graph.errors import TruncatedContent

BLOCK = 512
CHUNK = 1 << 20
MAX_META = 1 << 20  # pax header or GNU long name: more than this is hostile

REG, HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIR, FIFO = "0", "1", "2", "3", "4", "5", "6"
_REG_ALIASES = {"\0": REG, "7": REG}
_SUPPORTED = {REG, HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIR, FIFO}


class Source(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


@dataclasses.dataclass(slots=True)
class Entry:
    name: str
    type: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    linkname: str
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes]


def _num(field: bytes) -> int:
    if field and field[0] & 0x80:  # base-256 (GNU) for big values
        value = int.from_bytes(field[1:], "big")
        if field[0] & 0x40:
            raise InvalidArgument("tar header: negative numeric field")
        return value
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise InvalidArgument(f"tar header: bad numeric field {field!r}") from None


def _str(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise InvalidArgument("tar pax header: bad record length") from None
        if length <= 0 or pos + length > len(data):
            raise InvalidArgument("tar pax header: record overruns the header")
        record = data[space + 1 : pos + length - 1]
        key, sep, value = record.partition(b"=")
        if not sep:
            raise InvalidArgument("tar pax header: record without '='")
        out[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return out


class TarReader:
    def __init__(self, src: Source) -> None:
        self._src = src
        self._buf = b""
        self._pos = 0
        self._data_len = 0  # data of the current entry not yet consumed
        self._pad = 0

    def _fill(self, n: int) -> memoryview:
        """Return exactly n buffered bytes (consuming them) or raise on a short stream."""
        have = len(self._buf) - self._pos
        if have < n:
            parts = [self._buf[self._pos :]]
            while have < n:
                chunk = self._src.read(max(CHUNK, n - have))
                if not chunk:
                    raise TruncatedContent(
                        f"tar stream ends in the middle of an entry ({have}/{n})")
                parts.append(chunk)
                have += len(chunk)
            self._buf = b"".join(parts)
            self._pos = 0
        view = memoryview(self._buf)[self._pos : self._pos + n]
        self._pos += n
        return view

    def _read_block_or_eof(self) -> bytes | None:
        if len(self._buf) - self._pos == 0:
            chunk = self._src.read(CHUNK)
            if not chunk:
                return None
            self._buf, self._pos = chunk, 0
        return bytes(self._fill(BLOCK))

    def _consume(self, n: int, fd: int | None) -> None:
        """Consume n bytes, writing them to fd when given."""
        while n:
            have = len(self._buf) - self._pos
            if have == 0:
                chunk = self._src.read(max(CHUNK, min(n, 8 * CHUNK)))
                if not chunk:
                    raise TruncatedContent(f"tar stream ends with {n} bytes of data missing")
                self._buf, self._pos = chunk, 0
                have = len(chunk)
            take = min(have, n)
            if fd is not None:
                view = memoryview(self._buf)[self._pos : self._pos + take]
                while view:
                    view = view[os.write(fd, view):]
            self._pos += take
            n -= take

    def copy_to(self, fd: int | None) -> None:
        """Copy the current entry's data to fd (or skip it with None), then its padding."""
        data, pad = self._data_len, self._pad
        self._data_len = self._pad = 0
        self._consume(data, fd)
        self._consume(pad, None)

    def next(self) -> Entry | None:
        if self._data_len or self._pad:
            self.copy_to(None)
        pax: dict[str, bytes] = {}
        long_name: str | None = None
        long_link: str | None = None
        while True:
            block = self._read_block_or_eof()
            if block is None or block == bytes(BLOCK):
                return None  # end of archive (one or two zero blocks, or EOF)
            checksum = _num(block[148:156])
            if checksum != sum(block[:148]) + sum(block[156:]) + 8 * 32:
                raise InvalidArgument("tar header checksum mismatch: not a tar stream or corrupt")
            kind = chr(block[156])
            size = _num(block[124:136])
            if kind in ("x", "g", "L", "K"):
                if size > MAX_META:
                    raise InvalidArgument(f"tar: {size}-byte metadata header is too large")
                meta = bytes(self._fill(size + (-size % BLOCK)))[:size]
                if kind == "x":
                    pax.update(_pax(meta))
                elif kind == "L":
                    long_name = meta.rstrip(b"\0").decode("utf-8", "surrogateescape")
                elif kind == "K":
                    long_link = meta.rstrip(b"\0").decode("utf-8", "surrogateescape")
                continue  # global headers ("g") carry nothing we apply
            kind = _REG_ALIASES.get(kind, kind)
            if kind not in _SUPPORTED:
                raise InvalidArgument(f"tar: unsupported entry type {kind!r}")
            name = _str(block[0:100])
            if block[257:262] == b"ustar" and block[345] != 0:
                name = _str(block[345:500]) + "/" + name
            entry = Entry(
                name=long_name if long_name is not None else name, type=kind, size=size,
                mode=_num(block[100:108]) & 0o7777, uid=_num(block[108:116]),
                gid=_num(block[116:124]), mtime_ns=_num(block[136:148]) * 1_000_000_000,
                linkname=long_link if long_link is not None else _str(block[157:257]),
                devmajor=_num(block[329:337]), devminor=_num(block[337:345]), xattrs={})
            if pax:
                self._apply_pax(entry, pax)
            if kind == REG:
                self._data_len, self._pad = entry.size, -entry.size % BLOCK
            else:
                entry.size = 0  # header-only types carry no data whatever the field says
            return entry

    @staticmethod
    def _apply_pax(entry: Entry, pax: dict[str, bytes]) -> None:
        for key, value in pax.items():
            text = value.decode("utf-8", "surrogateescape")
            if key == "path":
                entry.name = text
            elif key == "linkpath":
                entry.linkname = text
            elif key == "size":
                entry.size = int(text)
            elif key == "uid":
                entry.uid = int(text)
            elif key == "gid":
                entry.gid = int(text)
            elif key == "mtime":
                sec, _, frac = text.partition(".")
                entry.mtime_ns = int(sec) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
            elif key.startswith("SCHILY.xattr."):
                entry.xattrs[key[len("SCHILY.xattr."):]] = value
            elif key.startswith("GNU.sparse"):
                raise InvalidArgument("tar: sparse files are not supported")
