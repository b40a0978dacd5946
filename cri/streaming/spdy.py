"""SPDY/3.1 framing, as kubectl, crictl and the apiserver use it for streaming.

A connection upgraded with `Upgrade: SPDY/3.1` carries frames: control frames (a version
and a type) and data frames (a stream ID). The client opens one stream per channel with
SYN_STREAM, naming it in a `streamType` header (stdin, stdout, stderr, error, resize; for
port-forward data/error plus a `port` header). Header blocks are zlib-compressed with the
SPDY/3 dictionary, one compression context per direction for the whole connection.
"""
from __future__ import annotations

import dataclasses
import struct
import zlib

from engine.errors import InvalidArgument

VERSION = 3

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS = 1, 2, 3, 4
PING, GOAWAY, HEADERS, WINDOW_UPDATE = 6, 7, 8, 9
CONTROL_TYPES = (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS,
                 WINDOW_UPDATE)

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL = 1, 2, 3, 5

MAX_FRAME = 1 << 24  # the 24-bit length field's limit
MAX_HEADER_BLOCK = 1 << 16  # decompressed; ours and our clients' are tiny

_DICT_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
    "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
)
_DICT_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502"
    "504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
# The zlib dictionary of the SPDY/3 specification (section 2.6.10.1): each word with a
# 4-byte big-endian length, then the tail. 1423 bytes.
HEADER_DICTIONARY = b"".join(struct.pack("!I", len(w)) + w.encode()
                             for w in _DICT_WORDS) + _DICT_TAIL.encode()

Headers = dict[str, list[str]]


@dataclasses.dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclasses.dataclass(frozen=True)
class ControlFrame:
    type: int
    flags: int
    stream_id: int = 0  # SYN_STREAM, SYN_REPLY, RST_STREAM, HEADERS, WINDOW_UPDATE
    headers: Headers = dataclasses.field(default_factory=dict)
    associated_id: int = 0  # SYN_STREAM
    priority: int = 0  # SYN_STREAM
    value: int = 0  # RST_STREAM/GOAWAY status, PING id, WINDOW_UPDATE delta
    settings: tuple[tuple[int, int, int], ...] = ()  # (flags, id, value)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


Frame = DataFrame | ControlFrame


class HeaderCompressor:
    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15,
                                   zdict=HEADER_DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        block = struct.pack("!I", len(headers))
        for name, values in headers.items():
            value = "\x00".join(values).encode()
            block += struct.pack("!I", len(name)) + name.lower().encode()
            block += struct.pack("!I", len(value)) + value
        return self._z.compress(block) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            block = self._z.decompress(data, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise InvalidArgument(f"SPDY header block does not decompress: {exc}") from exc
        if self._z.unconsumed_tail:
            raise InvalidArgument(f"SPDY header block larger than {MAX_HEADER_BLOCK} bytes")
        return _parse_header_block(block)


def _parse_header_block(block: bytes) -> Headers:
    def take(pos: int) -> tuple[bytes, int]:
        if pos + 4 > len(block):
            raise InvalidArgument("truncated SPDY header block")
        (n,) = struct.unpack_from("!I", block, pos)
        if pos + 4 + n > len(block):
            raise InvalidArgument("truncated SPDY header block")
        return block[pos + 4:pos + 4 + n], pos + 4 + n

    if len(block) < 4:
        raise InvalidArgument("truncated SPDY header block")
    (count,) = struct.unpack_from("!I", block, 0)
    headers: Headers = {}
    pos = 4
    for _ in range(count):
        name, pos = take(pos)
        value, pos = take(pos)
        if not name or name.lower() != name:
            raise InvalidArgument(f"bad SPDY header name {name!r}")
        headers.setdefault(name.decode("latin-1"), []).extend(
            value.decode("latin-1").split("\x00"))
    if pos != len(block):
        raise InvalidArgument("trailing bytes after the SPDY header block")
    return headers


def _control(type_: int, flags: int, payload: bytes) -> bytes:
    return struct.pack("!HHI", 0x8000 | VERSION, type_, (flags << 24) | len(payload)) + payload


def encode_data(stream_id: int, data: bytes, *, fin: bool = False) -> bytes:
    return struct.pack("!II", stream_id & 0x7FFFFFFF,
                       ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def encode_syn_stream(z: HeaderCompressor, stream_id: int, headers: Headers, *,
                      fin: bool = False, associated_id: int = 0) -> bytes:
    payload = struct.pack("!IIBB", stream_id, associated_id, 0, 0) + z.compress(headers)
    return _control(SYN_STREAM, FLAG_FIN if fin else 0, payload)


def encode_syn_reply(z: HeaderCompressor, stream_id: int, headers: Headers, *,
                     fin: bool = False) -> bytes:
    payload = struct.pack("!I", stream_id) + z.compress(headers)
    return _control(SYN_REPLY, FLAG_FIN if fin else 0, payload)


def encode_rst_stream(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack("!II", stream_id, status))


def encode_ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack("!I", ping_id))


def encode_goaway(last_stream_id: int, status: int = 0) -> bytes:
    return _control(GOAWAY, 0, struct.pack("!II", last_stream_id, status))


def encode_settings(settings: tuple[tuple[int, int, int], ...]) -> bytes:
    payload = struct.pack("!I", len(settings)) + b"".join(
        struct.pack("!II", (f << 24) | i, v) for f, i, v in settings)
    return _control(SETTINGS, 0, payload)


def encode_window_update(stream_id: int, delta: int) -> bytes:
    return _control(WINDOW_UPDATE, 0, struct.pack("!II", stream_id, delta))


class FrameReader:
    """Incremental decoder of one direction of a SPDY/3.1 connection."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._headers = HeaderDecompressor()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            first, second = struct.unpack_from("!II", self._buf, 0)
            length = second & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            flags = second >> 24
            if first & 0x80000000:
                frames.append(self._control(first, flags, payload))
            else:
                frames.append(DataFrame(first & 0x7FFFFFFF, payload, flags))
        return frames

    def _control(self, first: int, flags: int, payload: bytes) -> ControlFrame:
        version, type_ = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise InvalidArgument(f"SPDY version {version} is not 3")

        def words(n: int) -> tuple[int, ...]:
            if len(payload) < 4 * n:
                raise InvalidArgument(f"SPDY control frame type {type_} is too short")
            return struct.unpack_from(f"!{n}I", payload, 0)

        if type_ == SYN_STREAM:
            sid, assoc = words(2)
            if len(payload) < 10:
                raise InvalidArgument("SPDY SYN_STREAM is too short")
            return ControlFrame(SYN_STREAM, flags, sid & 0x7FFFFFFF,
                                self._headers.decompress(payload[10:]),
                                associated_id=assoc & 0x7FFFFFFF, priority=payload[8] >> 5)
        if type_ in (SYN_REPLY, HEADERS):
            (sid,) = words(1)
            return ControlFrame(type_, flags, sid & 0x7FFFFFFF,
                                self._headers.decompress(payload[4:]))
        if type_ in (RST_STREAM, WINDOW_UPDATE):
            sid, value = words(2)
            return ControlFrame(type_, flags, sid & 0x7FFFFFFF, value=value & 0x7FFFFFFF)
        if type_ == GOAWAY:
            sid, value = words(2)
            return ControlFrame(GOAWAY, flags, sid & 0x7FFFFFFF, value=value)
        if type_ == PING:
            return ControlFrame(PING, flags, value=words(1)[0])
        if type_ == SETTINGS:
            (count,) = words(1)
            entries = words(1 + 2 * count)[1:]
            return ControlFrame(SETTINGS, flags, settings=tuple(
                (entries[i] >> 24, entries[i] & 0xFFFFFF, entries[i + 1])
                for i in range(0, len(entries), 2)))
        return ControlFrame(type_, flags)  # unknown types are ignored, as SPDY/3 asks
