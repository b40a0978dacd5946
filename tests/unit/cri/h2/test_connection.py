"""The HTTP/2 connection state machine without sockets: frames in, frames out."""
from __future__ import annotations

import struct

from cri.h2 import frames, hpack
from cri.h2.connection import Connection
from cri.h2.frames import ErrorCode, Flag, FrameType
from cri.h2.stream import OUR_STREAM_WINDOW, Stream

REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/s/M"),
           (b":authority", b"x"), (b"content-type", b"application/grpc")]


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[int, list[hpack.Header], bool]] = []
        self.data: list[tuple[int, bytes, bool]] = []
        self.resets: list[int] = []
        self.drained: list[int] = []
        self.too_large: list[tuple[int, int]] = []

    def on_request(self, stream: Stream, headers: list[hpack.Header],
                   end_stream: bool) -> None:
        self.requests.append((stream.id, headers, end_stream))

    def on_data(self, stream: Stream, data: bytes, end_stream: bool) -> None:
        self.data.append((stream.id, data, end_stream))

    def on_reset(self, stream: Stream) -> None:
        self.resets.append(stream.id)

    def on_headers_too_large(self, stream: Stream, size: int) -> None:
        self.too_large.append((stream.id, size))

    def on_drained(self, stream: Stream) -> None:
        self.drained.append(stream.id)


def parse(out: bytearray) -> list[tuple[int, int, int, bytes]]:
    got = []
    pos = 0
    while pos < len(out):
        length, t, flags, sid = frames.parse_header(out, pos)
        got.append((t, flags, sid, bytes(out[pos + 9:pos + 9 + length])))
        pos += 9 + length
    out.clear()
    return got


def connected() -> tuple[Connection, Recorder]:
    rec = Recorder()
    conn = Connection(rec)
    conn.receive(frames.PREFACE + frames.settings({}))
    got = parse(conn.out)
    assert got[0][0] == FrameType.SETTINGS and got[0][1] == 0  # our preface first
    assert (FrameType.SETTINGS, Flag.ACK) in [(t, f) for t, f, _, _ in got]
    return conn, rec


def goaway_code(conn: Connection) -> int:
    got = [p for t, _, _, p in parse(conn.out) if t == FrameType.GOAWAY]
    assert got and conn.closed
    return int(struct.unpack(">L", got[0][4:8])[0])


def test_ping_is_answered_with_the_same_payload() -> None:
    conn, _ = connected()
    conn.receive(frames.frame(FrameType.PING, 0, 0, b"abcdefgh"))
    assert parse(conn.out) == [(FrameType.PING, Flag.ACK, 0, b"abcdefgh")]


def test_headers_split_over_continuation_frames() -> None:
    conn, rec = connected()
    block = hpack.encode(REQUEST)
    conn.receive(frames.frame(FrameType.HEADERS, 0, 1, block[:5])
                 + frames.frame(FrameType.CONTINUATION, 0, 1, block[5:9])
                 + frames.frame(FrameType.CONTINUATION, Flag.END_HEADERS | 0, 1, block[9:]))
    assert rec.requests == [(1, REQUEST, False)]


def test_interleaving_a_continuation_is_a_protocol_error() -> None:
    conn, _ = connected()
    block = hpack.encode(REQUEST)
    conn.receive(frames.frame(FrameType.HEADERS, 0, 1, block[:5])
                 + frames.frame(FrameType.PING, 0, 0, b"12345678"))
    assert goaway_code(conn) == ErrorCode.PROTOCOL_ERROR


def test_padded_data_and_the_receive_window_is_given_back() -> None:
    conn, rec = connected()
    conn.receive(frames.headers(1, hpack.encode(REQUEST), end_stream=False, max_frame=16384))
    stream = conn.streams[1]
    payload = bytes((3,)) + b"hello" + b"\0\0\0"
    conn.receive(frames.frame(FrameType.DATA, Flag.PADDED | Flag.END_STREAM, 1, payload))
    assert rec.data == [(1, b"hello", True)]
    assert stream.remote_closed


def test_data_beyond_the_stream_window_is_a_stream_error() -> None:
    conn, _ = connected()
    conn.receive(frames.headers(1, hpack.encode(REQUEST), end_stream=False, max_frame=16384))
    conn.streams[1].recv_window = 10
    conn.receive(frames.frame(FrameType.DATA, 0, 1, b"x" * 11))
    got = parse(conn.out)
    assert (FrameType.RST_STREAM, 0, 1, struct.pack(">L", ErrorCode.FLOW_CONTROL_ERROR)) in got
    assert not conn.closed


def test_consumed_bytes_reopen_the_stream_window() -> None:
    conn, _ = connected()
    conn.receive(frames.headers(1, hpack.encode(REQUEST), end_stream=False, max_frame=16384))
    stream = conn.streams[1]
    for _ in range(OUR_STREAM_WINDOW // 16384 // 2):
        conn.receive(frames.frame(FrameType.DATA, 0, 1, bytes(16384)))
        conn.consumed(stream, 16384)
    updates = [p for t, _, sid, p in parse(conn.out) if t == FrameType.WINDOW_UPDATE and sid]
    assert updates and sum(struct.unpack(">L", p)[0] for p in updates) == OUR_STREAM_WINDOW // 2
    assert stream.recv_window == OUR_STREAM_WINDOW


def test_we_never_send_beyond_the_peers_windows() -> None:
    conn, _ = connected()
    conn.receive(frames.settings({frames.Setting.INITIAL_WINDOW_SIZE: 100}))
    conn.receive(frames.headers(1, hpack.encode(REQUEST), end_stream=True, max_frame=16384))
    parse(conn.out)
    stream = conn.streams[1]
    conn.send_headers(stream, b"\x88")
    conn.send_data(stream, b"a" * 250)
    conn.send_trailers(stream, b"\x88")
    data = [p for t, _, _, p in parse(conn.out) if t == FrameType.DATA]
    assert b"".join(data) == b"a" * 100
    conn.receive(frames.window_update(1, 200))
    got = parse(conn.out)
    assert b"".join(p for t, _, _, p in got if t == FrameType.DATA) == b"a" * 150
    assert got[-1][:2] == (FrameType.HEADERS, Flag.END_STREAM | Flag.END_HEADERS)
    assert 1 not in conn.streams


def test_rst_stream_cancels_the_request() -> None:
    conn, rec = connected()
    conn.receive(frames.headers(1, hpack.encode(REQUEST), end_stream=False, max_frame=16384))
    conn.receive(frames.rst_stream(1, ErrorCode.CANCEL))
    assert rec.resets == [1] and 1 not in conn.streams


def test_a_new_stream_below_the_last_is_refused() -> None:
    conn, _ = connected()
    conn.receive(frames.headers(5, hpack.encode(REQUEST), end_stream=True, max_frame=16384))
    conn.receive(frames.headers(3, hpack.encode(REQUEST), end_stream=True, max_frame=16384))
    assert goaway_code(conn) == ErrorCode.STREAM_CLOSED


def test_goaway_refuses_new_streams_and_keeps_running_ones() -> None:
    conn, rec = connected()
    conn.receive(frames.headers(1, hpack.encode(REQUEST), end_stream=True, max_frame=16384))
    conn.goaway()
    got = parse(conn.out)
    assert got[0][0] == FrameType.GOAWAY and got[0][3][:4] == struct.pack(">L", 1)
    conn.receive(frames.headers(3, hpack.encode(REQUEST), end_stream=True, max_frame=16384))
    assert parse(conn.out) == [(FrameType.RST_STREAM, 0, 3,
                                struct.pack(">L", ErrorCode.REFUSED_STREAM))]
    assert [r[0] for r in rec.requests] == [1] and 1 in conn.streams


def test_oversized_frames_and_bad_settings_are_connection_errors() -> None:
    conn, _ = connected()
    conn.receive(frames.frame(FrameType.DATA, 0, 1, bytes(16385)))
    assert goaway_code(conn) == ErrorCode.FRAME_SIZE_ERROR
    conn, _ = connected()
    conn.receive(frames.settings({frames.Setting.INITIAL_WINDOW_SIZE: 1 << 31}))
    assert goaway_code(conn) == ErrorCode.FLOW_CONTROL_ERROR
    conn, _ = connected()
    conn.receive(frames.frame(FrameType.PUSH_PROMISE, 4, 1, bytes(4)))
    assert goaway_code(conn) == ErrorCode.PROTOCOL_ERROR


def test_a_bad_preface_is_refused() -> None:
    conn = Connection(Recorder())
    parse(conn.out)
    conn.receive(b"GET / HTTP/1.1\r\n")
    assert goaway_code(conn) == ErrorCode.PROTOCOL_ERROR
