"""Inflating compressed request messages: bounded by the receive limit, precise codes."""
from __future__ import annotations

import gzip
import tracemalloc
import zlib

import grpc
import pytest

from cri.h2 import compression


def _refused(encoding: bytes, data: bytes, limit: int = 1 << 20) -> grpc.StatusCode:
    with pytest.raises(compression.Refused) as info:
        compression.decompress(encoding, data, limit=limit)
    return info.value.code


def test_gzip_and_deflate_as_grpc_clients_send_them() -> None:
    body = b"hello " * 1000
    assert compression.decompress(b"gzip", gzip.compress(body), limit=len(body)) == body
    assert compression.decompress(b"deflate", zlib.compress(body), limit=len(body)) == body


def test_a_bomb_is_refused_without_being_inflated() -> None:
    """32 MiB of zeros in 32 KB: refused once the limit (1 MiB) is passed; the memory
    it took stays near the limit, not near 32 MiB."""
    bomb = zlib.compress(bytes(32 << 20), 9)
    tracemalloc.start()
    try:
        code = _refused(b"deflate", bomb, limit=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert peak < 4 << 20
    assert compression.decompress(b"deflate", zlib.compress(bytes(1 << 20)),
                                  limit=1 << 20) == bytes(1 << 20)  # at the limit: fine


@pytest.mark.parametrize(("encoding", "data"), [
    (b"gzip", b"not gzip at all"),
    (b"gzip", gzip.compress(b"cut short")[:-6]),
    (b"deflate", zlib.compress(b"x") + b"trailing"),
    (b"deflate", gzip.compress(b"gzip framing is not deflate's")),
    (b"identity", zlib.compress(b"flag 1 without an encoding")),
    (b"", zlib.compress(b"flag 1 without an encoding")),
], ids=["garbage", "truncated", "trailing", "wrong-format", "identity", "absent"])
def test_what_cannot_be_inflated_is_internal(encoding: bytes, data: bytes) -> None:
    assert _refused(encoding, data) == grpc.StatusCode.INTERNAL


def test_what_we_accept() -> None:
    assert all(compression.accepted(e) for e in (b"", b"identity", b"gzip", b"deflate"))
    assert not compression.accepted(b"br") and not compression.accepted(b"snappy")
    details = compression.unsupported(b"br")
    assert "br" in details and "identity,deflate,gzip" in details
