from __future__ import annotations

import base64

import pytest

from cri.streaming import exitstatus
from cri.streaming import websocket as ws
from engine.errors import InvalidArgument


def test_accept_key_of_rfc6455_example() -> None:
    assert ws.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 200_000])
def test_frames_round_trip_across_length_encodings(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = ws.Frame(ws.OP_BINARY, payload)
    wire = ws.encode(frame, mask=b"\x01\x02\x03\x04")
    reader = ws.FrameReader(require_mask=True)
    got: list[ws.Frame] = []
    for i in range(0, len(wire), 7000):  # arbitrary chunking
        got += reader.feed(wire[i:i + 7000])
    assert got == [frame]
    assert ws.FrameReader(require_mask=False).feed(ws.encode(frame)) == [frame]


def test_masking_is_applied_on_the_wire() -> None:
    wire = ws.encode(ws.Frame(ws.OP_TEXT, b"Hello"), mask=b"\x37\xfa\x21\x3d")
    assert wire == bytes.fromhex("818537fa213d7f9f4d5158")  # RFC 6455 section 5.7


@pytest.mark.parametrize(("wire", "needle"), [
    (bytes([0x82, 0x05]) + b"hello", "must be masked"),
    (bytes([0xC2, 0x80]) + b"\x00" * 4, "reserved bits"),
    (bytes([0x83, 0x80]) + b"\x00" * 4, "opcode"),
    (bytes([0x09, 0x80]) + b"\x00" * 4, "unfragmented"),
    (bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big"), "exceeds"),
])
def test_bad_client_frames_are_rejected(wire: bytes, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        ws.FrameReader(require_mask=True).feed(wire)


def test_v4_and_v5_channel_messages() -> None:
    v4, v5 = ws.ChannelCodec("v4.channel.k8s.io"), ws.ChannelCodec("v5.channel.k8s.io")
    frame = v4.message(ws.STDOUT, b"out")
    assert frame == ws.Frame(ws.OP_BINARY, b"\x01out")
    assert v4.parse(ws.Frame(ws.OP_BINARY, b"\x00in")) == (ws.STDIN, b"in")
    assert v5.parse(v5.close_message(ws.STDIN)) == (ws.CLOSE_CHANNEL, b"\x00")
    with pytest.raises(InvalidArgument):
        v4.parse(ws.Frame(ws.OP_BINARY, b"\xff\x00"))  # v4 has no close channel
    with pytest.raises(InvalidArgument):
        v4.close_message(ws.STDIN)
    resize = v4.parse(ws.Frame(ws.OP_BINARY, b'\x04{"Width":80,"Height":24}'))
    assert resize[0] == ws.RESIZE


def test_base64_channel_messages() -> None:
    codec = ws.ChannelCodec("v4.base64.channel.k8s.io")
    frame = codec.message(ws.STDERR, b"\x00\xff")
    assert frame.opcode == ws.OP_TEXT and frame.payload == b"2" + base64.b64encode(b"\x00\xff")
    assert codec.parse(frame) == (ws.STDERR, b"\x00\xff")
    with pytest.raises(InvalidArgument):
        codec.parse(ws.Frame(ws.OP_TEXT, b"1***"))


def test_exit_status_json() -> None:
    assert exitstatus.parse_exit_code(exitstatus.exit_code(0)) == 0
    assert exitstatus.parse_exit_code(exitstatus.exit_code(42)) == 42
    assert exitstatus.parse_exit_code(exitstatus.failure("no such container")) is None
