"""Bad input on the socket, against both servers engined can run where they behave alike:
frame floods (GOAWAY ENHANCE_YOUR_CALM), header lists over the advertised limit, and
compressed requests (gzip and deflate accepted, a zip bomb RESOURCE_EXHAUSTED)."""
from __future__ import annotations

import gzip
import shutil
import struct
import time
import zlib

import grpc
import pytest

from cri.h2 import frames, hpack
from cri.h2.frames import ErrorCode, FrameType, Setting
from cri.h2.guard import Limits
from tests.unit.cri.h2.echo_service import (
    SERVICE,
    Served,
    frames_until,
    raw_socket,
    serve,
)

# 40 MiB of zeros is 40 KB of gzip: well past the 16 MiB receive limit once inflated
BOMB = gzip.compress(b"echo:" + bytes(40 << 20), compresslevel=9)


def _request_block(*extra: hpack.Header, method: str = "Unary") -> bytes:
    return hpack.encode([(b":method", b"POST"), (b":scheme", b"http"),
                         (b":path", f"/{SERVICE}/{method}".encode()), (b":authority", b"x"),
                         (b"content-type", b"application/grpc"), (b"te", b"trailers"),
                         *extra])


def _message_frames(sid: int, flag: int, body: bytes) -> bytes:
    """One length-prefixed message as DATA frames of at most 16 KiB, END_STREAM last."""
    data = struct.pack(">BL", flag, len(body)) + body
    parts = [data[i:i + 16384] for i in range(0, len(data), 16384)]
    return b"".join(frames.frame(FrameType.DATA, frames.Flag.END_STREAM if i == len(parts) - 1
                                 else 0, sid, part) for i, part in enumerate(parts))


def _answer(served: Served, block: bytes, body: bytes, flag: int) -> dict[bytes, bytes]:
    """The headers and trailers of a raw unary call on stream 1, merged."""
    with raw_socket(served) as sock:
        sock.sendall(frames.PREFACE + frames.settings({})
                     + frames.headers(1, block, end_stream=False, max_frame=16384)
                     + _message_frames(1, flag, body))
        got = frames_until(sock, FrameType.HEADERS, frames.Flag.END_STREAM)
    last = got[-1] if got else (0, 0, 0, b"")
    assert last[0] == FrameType.HEADERS and last[1] & frames.Flag.END_STREAM and last[2] == 1, \
        "closed before the answer"
    blocks = [payload for t, _, sid, payload in got if t == FrameType.HEADERS and sid == 1]
    decoder = hpack.Decoder()
    return {name: value for block in blocks for name, value in decoder.decode(block)}


def test_a_ping_flood_gets_goaway_too_many_pings(served: Served,
                                                 channel: grpc.Channel) -> None:
    """grpc-go and grpc core alike: the third strike ends the connection."""
    with raw_socket(served) as sock:
        sock.sendall(frames.PREFACE + frames.settings({}) + b"".join(
            frames.frame(FrameType.PING, 0, 0, struct.pack(">Q", i)) for i in range(6)))
        got = frames_until(sock, FrameType.GOAWAY)
        assert got[-1][0] == FrameType.GOAWAY, got
        payload = got[-1][3]
        assert struct.unpack(">L", payload[4:8])[0] == ErrorCode.ENHANCE_YOUR_CALM
        assert payload[8:] == b"too_many_pings"
        assert sock.recv(100) == b""  # closed
    assert served.call(channel, "Unary")(b"echo:calm", timeout=10) == b"calm"


def test_both_advertise_a_16_kib_header_list(served: Served) -> None:
    with raw_socket(served) as sock:
        sock.sendall(frames.PREFACE)
        t, _, _, payload = frames_until(sock, FrameType.SETTINGS)[-1]
    assert t == FrameType.SETTINGS
    assert (Setting.MAX_HEADER_LIST_SIZE, 16 << 10) in frames.parse_settings(payload)


def test_metadata_over_the_limit_is_resource_exhausted(served: Served,
                                                      channel: grpc.Channel) -> None:
    call = served.call(channel, "Unary")
    with pytest.raises(grpc.RpcError) as info:
        call(b"echo:x", metadata=(("x-big", "a" * 20_000),), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert call(b"echo:next", timeout=10) == b"next"  # the connection goes on


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate],
                         ids=["gzip", "deflate"])
def test_grpcio_clients_compressed_requests_are_served(
        served: Served, channel: grpc.Channel, compression: grpc.Compression) -> None:
    call = served.call(channel, "Unary")
    assert call(b"echo:" + b"z" * 5000, compression=compression, timeout=10) == b"z" * 5000
    total = channel.stream_unary(f"/{SERVICE}/Total")
    chunks = [bytes(3000) for _ in range(5)]
    assert total(iter(chunks), compression=compression, timeout=10) == b"15000"


def test_answers_advertise_what_we_accept(served: Served) -> None:
    got = _answer(served, _request_block(), b"echo:hi", 0)
    assert got[b"grpc-status"] == b"0"
    assert {e.strip() for e in got[b"grpc-accept-encoding"].split(b",")} == {
        b"identity", b"deflate", b"gzip"}


@pytest.mark.parametrize("encoding", [b"identity", None])
def test_a_compressed_flag_without_an_encoding_is_internal(served: Served,
                                                          encoding: bytes | None) -> None:
    """grpc doc/compression.md, test case 6."""
    extra = [(b"grpc-encoding", encoding)] if encoding else []
    got = _answer(served, _request_block(*extra), zlib.compress(b"echo:x"), 1)
    assert got[b"grpc-status"] == str(grpc.StatusCode.INTERNAL.value[0]).encode()


def test_a_zip_bomb_is_resource_exhausted(served: Served, channel: grpc.Channel) -> None:
    got = _answer(served, _request_block((b"grpc-encoding", b"gzip")), BOMB, 1)
    assert got[b"grpc-status"] == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]).encode()
    assert served.call(channel, "Unary")(b"echo:after", timeout=10) == b"after"


def test_an_unknown_encoding_is_unimplemented_naming_what_we_accept() -> None:
    """Ours, as compression.md says (grpcio's server answers INTERNAL: it cannot parse
    the header)."""
    s = serve("kpy")
    try:
        got = _answer(s, _request_block((b"grpc-encoding", b"br")), b"echo:x", 0)
    finally:
        s.stop()
        shutil.rmtree(s.path.parent, ignore_errors=True)
    assert got[b"grpc-status"] == str(grpc.StatusCode.UNIMPLEMENTED.value[0]).encode()
    assert got[b"grpc-accept-encoding"] == b"identity,deflate,gzip"
    assert b"br" in got[b"grpc-message"] and b"gzip" in got[b"grpc-message"]


def test_rapid_reset_gets_goaway_and_leaves_no_call_behind() -> None:
    """Ours: calls opened and reset at once beyond the budget end the connection; every
    handler that started sees its call end and gives its worker back."""
    s = serve("kpy", limits=Limits(reset_burst=20, reset_per_s=0.0))
    server = s.running.server  # type: ignore[attr-defined]
    try:
        with raw_socket(s) as sock:
            sock.sendall(frames.PREFACE + frames.settings({}) + b"".join(
                frames.headers(sid, _request_block(), end_stream=False, max_frame=16384)
                + _message_frames(sid, 0, b"sleep:10")
                + frames.rst_stream(sid, ErrorCode.CANCEL) for sid in range(1, 61, 2)))
            got = frames_until(sock, FrameType.GOAWAY)
            assert got[-1][0] == FrameType.GOAWAY, got
            assert struct.unpack(">L", got[-1][3][4:8])[0] == ErrorCode.ENHANCE_YOUR_CALM
            assert got[-1][3][8:] == b"too_many_resets"
            assert sock.recv(100) == b""
        deadline = time.monotonic() + 10
        while (server._admission.held or server._clients) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server._admission.held == 0 and not server._clients
        with s.channel() as ch:
            assert s.call(ch, "Unary")(b"echo:ok", timeout=10) == b"ok"
    finally:
        s.stop()
        shutil.rmtree(s.path.parent, ignore_errors=True)
