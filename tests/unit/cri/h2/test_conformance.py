"""The same gRPC behaviours against both servers engined can run: ours (cri.h2, "kpy")
and grpcio's, through grpcio's client and through raw HTTP/2 on the socket."""
from __future__ import annotations

import shutil
import struct
import threading
import time
from concurrent import futures

import grpc
import pytest

from cri.h2 import calls, frames, hpack
from tests.unit.cri.h2.echo_service import KINDS, SERVICE, Served, frames_until, raw_socket, serve


def failure(fn: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        assert callable(fn)
        fn()
    return info.value


@pytest.mark.parametrize("method", ["Unary", "Inline"])
def test_unary_answers_and_sees_metadata(served: Served, channel: grpc.Channel,
                                         method: str) -> None:
    call = served.call(channel, method)
    answer = call(b"echo:hello", metadata=(("x-trace", "abc"), ("x-blob-bin", b"\x00\xff")),
                  timeout=10)
    assert answer == b"hello"
    assert served.seen.metadata["x-trace"] == "abc"
    assert served.seen.metadata["x-blob-bin"] == b"\x00\xff"
    assert served.seen.peer
    remaining = served.seen.remaining[-1]
    assert remaining is not None and 0 < remaining <= 11  # clients round the timeout up
    assert call(b"echo:", timeout=10) == b""  # an empty message is still one message


@pytest.mark.parametrize("method", ["Unary", "Inline"])
def test_status_codes_and_details_reach_the_client(served: Served, channel: grpc.Channel,
                                                   method: str) -> None:
    call = served.call(channel, method)
    err = failure(lambda: call("abort:NOT_FOUND:no such thing: 100% ünïcode\n".encode()))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "no such thing: 100% ünïcode\n"
    err = failure(lambda: call(b"set:not now"))
    assert (err.code(), err.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "not now")
    err = failure(lambda: call(b"raise:boom"))
    assert err.code() == grpc.StatusCode.UNKNOWN


def test_unknown_method_is_unimplemented(served: Served, channel: grpc.Channel) -> None:
    err = failure(lambda: channel.unary_unary("/test.v1.Echo/Nope")(b""))
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    err = failure(lambda: channel.unary_unary("/no.Such/Service")(b""))
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED


def test_deadline_exceeded_ends_the_call_on_the_server(served: Served,
                                                       channel: grpc.Channel) -> None:
    served.seen.ended.clear()
    t0 = time.monotonic()
    err = failure(lambda: served.call(channel, "Unary")(b"sleep:5", timeout=0.3))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 3
    assert served.seen.ended.wait(3)  # the handler saw is_active() go False


def test_server_streaming(served: Served, channel: grpc.Channel) -> None:
    got = list(channel.unary_stream(f"/{SERVICE}/Count")(b"200", timeout=10))
    assert got == [str(i).encode() for i in range(200)]


def test_client_cancel_stops_the_stream(served: Served, channel: grpc.Channel) -> None:
    served.seen.ended.clear()
    served.seen.stream_stopped.clear()
    stream = channel.unary_stream(f"/{SERVICE}/Count")(b"0")
    assert next(stream) == b"0"
    stream.cancel()
    assert served.seen.ended.wait(5)
    assert served.seen.stream_stopped.wait(5)


def test_client_disconnect_mid_stream_stops_the_stream(served: Served) -> None:
    served.seen.ended.clear()
    served.seen.stream_stopped.clear()
    ch = served.channel()
    stream = ch.unary_stream(f"/{SERVICE}/Count")(b"0")
    assert next(stream) == b"0"
    ch.close()
    assert served.seen.ended.wait(5)
    assert served.seen.stream_stopped.wait(5)


def test_client_streaming_and_bidi(served: Served, channel: grpc.Channel) -> None:
    chunks = [bytes(1000 + i) for i in range(50)]
    assert channel.stream_unary(f"/{SERVICE}/Total")(iter(chunks), timeout=10) == (
        str(sum(map(len, chunks))).encode())
    words = [b"a", b"bc", b"def"]
    assert list(channel.stream_stream(f"/{SERVICE}/Chat")(iter(words), timeout=10)) == [
        b"A", b"BC", b"DEF"]


def test_big_messages_and_the_16_mib_limit(served: Served, channel: grpc.Channel) -> None:
    call = served.call(channel, "Unary")
    assert len(call(b"big:9000000", timeout=30)) == 9_000_000
    assert call(b"echo:" + b"y" * 5_000_000, timeout=30) == b"y" * 5_000_000
    err = failure(lambda: call(b"echo:" + bytes(17 << 20), timeout=30))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    err = failure(lambda: call(b"big:17000000", timeout=30))  # an answer over the limit
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_an_oversized_message_mid_stream_ends_the_call(served: Served,
                                                     channel: grpc.Channel) -> None:
    total = channel.stream_unary(f"/{SERVICE}/Total")
    err = failure(lambda: total(iter([b"a" * 10, bytes(17 << 20)]), timeout=30))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert total(iter([b"abc"]), timeout=10) == b"3"  # the next call is served


def test_a_thousand_concurrent_calls(served: Served, channel: grpc.Channel) -> None:
    call = served.call(channel, "Unary")
    pending = [call.future(f"echo:{i}".encode(), timeout=60) for i in range(1000)]
    assert [f.result() for f in pending] == [str(i).encode() for i in range(1000)]


@pytest.mark.parametrize("kind", KINDS)
def test_calls_beyond_the_limit_are_resource_exhausted(kind: str) -> None:
    s = serve(kind, max_concurrent=2)
    try:
        with s.channel() as ch:
            call = s.call(ch, "Unary")
            slow = [call.future(b"sleep:1.5", timeout=10) for _ in range(2)]
            time.sleep(0.3)
            err = failure(lambda: call(b"echo:x", timeout=10))
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert [f.result() for f in slow] == [b"slept", b"slept"]
            assert call(b"echo:again", timeout=10) == b"again"
    finally:
        s.stop()
        shutil.rmtree(s.path.parent, ignore_errors=True)


# -- raw HTTP/2 on the socket ---------------------------------------------------------------

@pytest.mark.parametrize(("bad", "code"), [
    (frames.frame(frames.FrameType.DATA, 0, 0, b"x"), frames.ErrorCode.PROTOCOL_ERROR),
    (frames.frame(frames.FrameType.HEADERS, 4, 2, b"\x82"), frames.ErrorCode.PROTOCOL_ERROR),
    (frames.frame(frames.FrameType.PING, 0, 0, b"short"), frames.ErrorCode.FRAME_SIZE_ERROR),
    (frames.frame(frames.FrameType.SETTINGS, 0, 0, b"12345"),
     frames.ErrorCode.FRAME_SIZE_ERROR),
    (frames.frame(frames.FrameType.HEADERS, 4, 1, b"\xbe"),  # index past the table
     frames.ErrorCode.COMPRESSION_ERROR),
    (frames.window_update(0, 0), frames.ErrorCode.PROTOCOL_ERROR),
], ids=["data-on-0", "even-stream", "short-ping", "settings-size", "hpack", "window-0"])
def test_malformed_frames_end_the_connection_not_the_server(
        served: Served, channel: grpc.Channel, bad: bytes, code: frames.ErrorCode) -> None:
    """grpcio mostly just closes the connection (and fails the stream on a bad HPACK
    index); ours sends GOAWAY with the error code RFC 9113 names, then closes."""
    with raw_socket(served) as sock:
        if served.kind == "grpcio":  # nothing of its answer is checked; some never close
            sock.settimeout(0.5)
        sock.sendall(frames.PREFACE + frames.settings({}) + bad)
        got = frames_until(sock, frames.FrameType.GOAWAY)
    if served.kind == "kpy":
        goaways = [payload for t, _, _, payload in got if t == frames.FrameType.GOAWAY]
        assert goaways, f"no GOAWAY in {got}"
        assert struct.unpack(">L", goaways[0][4:8])[0] == code
    assert served.call(channel, "Unary")(b"echo:still here", timeout=10) == b"still here"


def test_not_http2_is_dropped(served: Served, channel: grpc.Channel) -> None:
    with raw_socket(served) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = frames_until(sock, frames.FrameType.GOAWAY)  # or the close
        if served.kind == "kpy":
            assert got[-1][0] == frames.FrameType.GOAWAY
        assert sock.recv(100) == b""  # closed
    assert served.call(channel, "Unary")(b"echo:ok", timeout=10) == b"ok"


def test_raw_unary_call_respects_a_small_stream_window(served: Served) -> None:
    """A 60 kB answer to a peer whose stream window is 1000 bytes comes in window-sized
    DATA frames, then the rest after WINDOW_UPDATE, then the trailers."""
    request = struct.pack(">BL", 0, 9) + b"big:60000"
    block = hpack.encode([(b":method", b"POST"), (b":scheme", b"http"),
                          (b":path", f"/{SERVICE}/Unary".encode()),
                          (b":authority", b"x"), (b"content-type", b"application/grpc"),
                          (b"te", b"trailers")])
    with raw_socket(served) as sock:
        sock.sendall(frames.PREFACE
                     + frames.settings({frames.Setting.INITIAL_WINDOW_SIZE: 1000})
                     + frames.headers(1, block, end_stream=False, max_frame=16384)
                     + frames.frame(frames.FrameType.DATA, frames.Flag.END_STREAM, 1, request))
        body = b""
        got: list[tuple[int, int, int, bytes]] = []
        deadline = time.monotonic() + 10
        buf = b""
        ended = False
        while not ended and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            buf += chunk
            while len(buf) >= 9:
                length, t, flags, sid = frames.parse_header(buf, 0)
                if len(buf) < 9 + length:
                    break
                payload, buf = buf[9:9 + length], buf[9 + length:]
                got.append((t, flags, sid, payload))
                if t == frames.FrameType.DATA and sid == 1:
                    assert len(payload) <= 1000
                    body += payload
                    sock.sendall(frames.window_update(1, len(payload))
                                 + frames.window_update(0, len(payload)))
                if t == frames.FrameType.HEADERS and flags & frames.Flag.END_STREAM:
                    ended = True
                    trailers = dict(hpack.Decoder().decode(payload))
                    assert trailers[b"grpc-status"] == b"0"
    assert ended
    assert body == struct.pack(">BL", 0, 60000) + b"x" * 60000


def test_a_stream_to_a_client_that_does_not_read_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ours: a streaming worker stops producing once HIGH_WATER bytes wait for a window
    the client never opens, and stops for good when the client goes."""
    monkeypatch.setattr(calls, "HIGH_WATER", 64)
    s = serve("kpy")
    try:
        block = hpack.encode([(b":method", b"POST"), (b":scheme", b"http"),
                              (b":path", f"/{SERVICE}/Count".encode()), (b":authority", b"x"),
                              (b"content-type", b"application/grpc")])
        with raw_socket(s) as sock:
            sock.sendall(frames.PREFACE
                         + frames.settings({frames.Setting.INITIAL_WINDOW_SIZE: 0})
                         + frames.headers(1, block, end_stream=False, max_frame=16384)
                         + frames.frame(frames.DATA, frames.Flag.END_STREAM, 1,
                                        struct.pack(">BL", 0, 1) + b"0"))
            time.sleep(0.6)  # unthrottled, Count makes ~100 messages in this time
            assert 0 < s.seen.yielded < 30
        assert s.seen.stream_stopped.wait(5)
    finally:
        s.stop()
        shutil.rmtree(s.path.parent, ignore_errors=True)


def test_stop_drains_then_refuses(served: Served) -> None:
    """Last: a fresh server of the same kind finishes a running call during stop."""
    s = serve(served.kind)
    try:
        ch = s.channel()
        running = s.call(ch, "Unary").future(b"sleep:0.5", timeout=10)
        time.sleep(0.2)
        stopper = threading.Thread(target=s.stop)
        stopper.start()
        assert running.result() == b"slept"
        stopper.join(10)
        assert not stopper.is_alive()
        err = failure(lambda: s.call(ch, "Unary")(b"echo:late", timeout=2))
        assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        ch.close()
    finally:
        shutil.rmtree(s.path.parent, ignore_errors=True)


def test_the_pool_is_bounded_not_the_inline_calls(served: Served,
                                                  channel: grpc.Channel) -> None:
    call = served.call(channel, "Inline")
    with futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: call(f"echo:{i}".encode(), timeout=10), range(200)))
    assert answers == [str(i).encode() for i in range(200)]
