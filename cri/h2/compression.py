"""Compressed request messages (grpc doc/compression.md): the encodings we accept, and
inflating one message without letting it grow past the receive limit.

We accept gzip and deflate (the zlib format, as grpc core sends it) and answer
uncompressed, which the spec allows whatever the client asked for.
"""
from __future__ import annotations

import zlib

import grpc

# what every answer advertises (grpc-accept-encoding), in grpc core's order
ACCEPT_ENCODING = b"identity,deflate,gzip"
IDENTITY = (b"", b"identity")
_WBITS = {b"gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}


class Refused(Exception):
    """A message we cannot take: the call ends with `code`."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def accepted(encoding: bytes) -> bool:
    return encoding in IDENTITY or encoding in _WBITS


def unsupported(encoding: bytes) -> str:
    """The UNIMPLEMENTED details for an encoding we do not accept."""
    return (f"grpc-encoding {encoding.decode('ascii', 'replace')} is not supported; "
            f"supported: {ACCEPT_ENCODING.decode()}")


def decompress(encoding: bytes, data: bytes, *, limit: int) -> bytes:
    """The message `data` (compressed flag 1) inflated; never more than `limit` + 1 bytes
    are produced, so a small bomb costs what a message at the limit costs."""
    wbits = _WBITS.get(encoding)
    if wbits is None:  # flag 1 with identity or no grpc-encoding: compression.md, case 6
        raise Refused(grpc.StatusCode.INTERNAL,
                      "compressed flag set on a message without a grpc-encoding "
                      "(other than identity)")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise Refused(grpc.StatusCode.INTERNAL,
                      f"cannot decompress the {encoding.decode()} message: {exc}") from None
    if len(out) > limit:
        raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                      f"Received message larger than max (more than {limit} bytes "
                      f"once decompressed)")
    if not inflater.eof or inflater.unused_data:
        raise Refused(grpc.StatusCode.INTERNAL,
                      f"the {encoding.decode()} message is truncated or has trailing bytes")
    return out
