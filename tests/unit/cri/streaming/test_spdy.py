from __future__ import annotations

import hashlib
import struct
import zlib

import pytest

from cri.streaming import negotiate, spdy
from engine.errors import InvalidArgument


def test_header_dictionary_is_the_spdy3_one() -> None:
    assert len(spdy.HEADER_DICTIONARY) == 1423
    assert hashlib.sha256(spdy.HEADER_DICTIONARY).hexdigest() == (
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02")


def test_syn_stream_round_trips_with_a_shared_compression_context() -> None:
    z = spdy.HeaderCompressor()
    reader = spdy.FrameReader()
    wire = b""
    for sid, kind in ((1, "error"), (3, "stdin"), (5, "stdout")):
        wire += spdy.encode_syn_stream(z, sid, {"streamtype": [kind]}, fin=kind == "error")
    frames = reader.feed(wire[:10]) + reader.feed(wire[10:])
    assert [(f.stream_id, f.headers, f.fin) for f in frames  # type: ignore[union-attr]
            ] == [(1, {"streamtype": ["error"]}, True), (3, {"streamtype": ["stdin"]}, False),
                  (5, {"streamtype": ["stdout"]}, False)]


def test_headers_use_the_dictionary() -> None:
    z = spdy.HeaderCompressor()
    frame = spdy.encode_syn_reply(z, 1, {"status": ["200 OK"], "version": ["HTTP/1.1"]})
    block = frame[12:]
    with pytest.raises(zlib.error):  # needs the dictionary to inflate
        zlib.decompressobj().decompress(block)
    got = spdy.FrameReader().feed(frame)[0]
    assert isinstance(got, spdy.ControlFrame) and got.headers["status"] == ["200 OK"]


def test_data_and_control_frames() -> None:
    wire = (spdy.encode_data(3, b"hi", fin=True) + spdy.encode_ping(7)
            + spdy.encode_rst_stream(5, spdy.CANCEL) + spdy.encode_goaway(9)
            + spdy.encode_settings(((0, 7, 65536),)) + spdy.encode_window_update(0, 100))
    frames = spdy.FrameReader().feed(wire)
    assert frames[0] == spdy.DataFrame(3, b"hi", spdy.FLAG_FIN)
    assert (frames[1].type, frames[1].value) == (spdy.PING, 7)  # type: ignore[union-attr]
    assert (frames[2].stream_id, frames[2].value) == (5, spdy.CANCEL)  # type: ignore[union-attr]
    assert frames[3].type == spdy.GOAWAY  # type: ignore[union-attr]
    assert frames[4].settings == ((0, 7, 65536),)  # type: ignore[union-attr]
    assert frames[5].value == 100  # type: ignore[union-attr]
    # a data frame's header: stream id, then flags and a 24-bit length
    assert spdy.encode_data(3, b"hi") == struct.pack("!II", 3, 2) + b"hi"


def test_bad_frames_are_rejected() -> None:
    with pytest.raises(InvalidArgument, match="version"):
        spdy.FrameReader().feed(struct.pack("!HHI", 0x8002, 1, 0))
    with pytest.raises(InvalidArgument, match="decompress"):
        spdy.FrameReader().feed(struct.pack("!HHI", 0x8003, 2, 8) + b"\x00\x00\x00\x01junk")


def test_protocol_negotiation() -> None:
    assert negotiate.choose(negotiate.SPDY_REMOTECOMMAND,
                            ["v2.channel.k8s.io, v4.channel.k8s.io"]) == "v4.channel.k8s.io"
    assert negotiate.choose(negotiate.WEBSOCKET_REMOTECOMMAND,
                            ["v4.channel.k8s.io", "v5.channel.k8s.io"]) == "v5.channel.k8s.io"
    with pytest.raises(InvalidArgument, match="no common"):
        negotiate.choose(negotiate.SPDY_PORTFORWARD, ["v4.channel.k8s.io"])
