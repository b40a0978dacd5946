"""gRPC-over-HTTP/2 details: grpc-timeout, grpc-message percent-encoding, metadata."""
from __future__ import annotations

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cri.h2 import hpack, wire


@pytest.mark.parametrize(("value", "seconds"), [
    (b"1H", 3600.0), (b"2M", 120.0), (b"3S", 3.0), (b"250m", 0.25), (b"7u", 7e-6),
    (b"99999999n", 0.099999999)])
def test_timeouts(value: bytes, seconds: float) -> None:
    assert wire.parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"1", b"123456789S", b"-1S", b"1.5S", b"1s", b"S"])
def test_malformed_timeouts(value: bytes) -> None:
    with pytest.raises(wire.BadTimeout):
        wire.parse_timeout(value)


def test_percent_encoding_of_grpc_message() -> None:
    assert wire.percent_encode("a 100% ok\n") == b"a 100%25 ok%0A"
    assert wire.percent_encode("é") == b"%C3%A9"


@given(st.text(max_size=200))
def test_percent_round_trip(text: str) -> None:
    encoded = wire.percent_encode(text)
    assert all(0x20 <= b <= 0x7E for b in encoded)
    assert wire.percent_decode(encoded) == text


def test_trailers_and_metadata() -> None:
    block = wire.trailers(grpc.StatusCode.NOT_FOUND, "gone", (("x-a", "1"), ("x-b-bin", b"\1")),
                          only=True)
    headers = hpack.Decoder().decode(block)
    assert headers == [(b":status", b"200"), (b"content-type", b"application/grpc"),
                       (b"grpc-accept-encoding", b"identity,deflate,gzip"),
                       (b"grpc-status", b"5"), (b"grpc-message", b"gone"), (b"x-a", b"1"),
                       (b"x-b-bin", b"AQ")]
    assert wire.invocation_metadata([(b":path", b"/x"), (b"te", b"trailers"),
                                     (b"x-b-bin", b"AQ"), (b"user-agent", b"me")]) == (
        ("x-b-bin", b"\1"), ("user-agent", "me"))
    with pytest.raises(ValueError):
        wire.trailers(grpc.StatusCode.OK, "", (("x-a", b"bytes without -bin"),))
