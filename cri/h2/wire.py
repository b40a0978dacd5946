"""gRPC over HTTP/2 (the PROTOCOL-HTTP2 document of grpc): the header blocks of answers,
grpc-timeout, grpc-message percent-encoding, and length-prefixed messages."""
from __future__ import annotations

import base64
import functools
import re
import struct

import grpc

from cri.h2 import hpack
from cri.h2.compression import ACCEPT_ENCODING

CONTENT_TYPE = b"application/grpc"
# what opens every answer; a trailers-only answer carries it too (the UNIMPLEMENTED of an
# unknown grpc-encoding must name what we accept)
_HEAD: list[hpack.Header] = [(b":status", b"200"), (b"content-type", CONTENT_TYPE),
                             (b"grpc-accept-encoding", ACCEPT_ENCODING)]
RESPONSE_HEADERS = hpack.encode(_HEAD)
PREFIX = struct.Struct(">BL")  # compressed flag, length
Metadata = tuple[tuple[str, str | bytes], ...]

_TIMEOUT = re.compile(rb"^([0-9]{1,8})([HMSmun])$")
_UNIT_S = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
# Headers a handler does not see as invocation metadata (grpcio hides these too).
HIDDEN = frozenset((b"te", b"content-type", b"grpc-timeout", b"grpc-encoding",
                    b"grpc-accept-encoding", b"grpc-message-type"))


class BadTimeout(ValueError):
    pass


def parse_timeout(value: bytes) -> float:
    """Seconds of a grpc-timeout value such as b"100m"."""
    m = _TIMEOUT.match(value)
    if m is None:
        raise BadTimeout(f"malformed grpc-timeout {value!r}")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def percent_encode(message: str) -> bytes:
    """grpc-message: UTF-8, with '%' and bytes outside 0x20..0x7E as %XX."""
    out = bytearray()
    for byte in message.encode("utf-8", "replace"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def percent_decode(value: bytes) -> str:
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == 0x25 and _is_hex(value[i + 1:i + 3]):
            out.append(int(value[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(value[i])
            i += 1
    return out.decode("utf-8", "replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def _metadata_headers(metadata: Metadata) -> list[hpack.Header]:
    out: list[hpack.Header] = []
    for key, value in metadata:
        name = key.lower().encode("ascii")
        if isinstance(value, bytes):
            if not key.endswith("-bin"):
                raise ValueError(f"binary metadata {key!r} must end in -bin")
            out.append((name, base64.b64encode(value).rstrip(b"=")))
        else:
            out.append((name, value.encode("ascii")))
    return out


def _status(code: grpc.StatusCode, message: str) -> list[hpack.Header]:
    status: list[hpack.Header] = [(b"grpc-status", str(code.value[0]).encode())]
    if message:
        status.append((b"grpc-message", percent_encode(message)))
    return status


@functools.lru_cache(maxsize=64)
def _plain_trailers(code: grpc.StatusCode, message: str, only: bool) -> bytes:
    return hpack.encode((_HEAD if only else []) + _status(code, message))


def trailers(code: grpc.StatusCode, message: str, metadata: Metadata = (), *,
             only: bool = False) -> bytes:
    """The block ending a call; `only` when no response headers were sent before it
    (a trailers-only answer carries :status and content-type too)."""
    if not metadata:
        return _plain_trailers(code, message, only)
    return hpack.encode((_HEAD if only else []) + _status(code, message)
                        + _metadata_headers(metadata))


def response_headers(metadata: Metadata) -> bytes:
    if not metadata:
        return RESPONSE_HEADERS
    return RESPONSE_HEADERS + hpack.encode(_metadata_headers(metadata))


def invocation_metadata(headers: list[hpack.Header]) -> Metadata:
    out: list[tuple[str, str | bytes]] = []
    for name, value in headers:
        if name.startswith(b":") or name in HIDDEN:
            continue
        key = name.decode("ascii", "replace")
        if key.endswith("-bin"):
            out.append((key, base64.b64decode(value + b"=" * (-len(value) % 4))))
        else:
            out.append((key, value.decode("ascii", "replace")))
    return tuple(out)
