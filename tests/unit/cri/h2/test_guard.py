"""The flood defences of one connection (cri.h2.guard) on the state machine, with a fake
clock: what trips them, and the traffic of normal clients that must not."""
from __future__ import annotations

import struct

import pytest

from cri.h2 import frames, hpack
from cri.h2.connection import Connection
from cri.h2.frames import ErrorCode, Flag, FrameType, Setting
from cri.h2.guard import DEFAULT_LIMITS, Limits
from tests.unit.cri.h2.test_connection import REQUEST, Recorder, parse


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def connected(limits: Limits = DEFAULT_LIMITS) -> tuple[Connection, Recorder, Clock]:
    clock = Clock()
    rec = Recorder()
    conn = Connection(rec, limits=limits, monotonic=clock)
    conn.receive(frames.PREFACE + frames.settings({}))
    parse(conn.out)
    return conn, rec, clock


def ping(n: int = 0) -> bytes:
    return frames.frame(FrameType.PING, 0, 0, struct.pack(">Q", n))


def goaway(conn: Connection) -> tuple[int, bytes]:
    """(error code, debug data) of the GOAWAY we sent; the connection is closed."""
    got = [p for t, _, _, p in parse(conn.out) if t == FrameType.GOAWAY]
    assert got and conn.closed
    return int(struct.unpack(">L", got[0][4:8])[0]), got[0][8:]


def open_stream(conn: Connection, sid: int) -> None:
    conn.receive(frames.headers(sid, hpack.encode(REQUEST), end_stream=False,
                                max_frame=16384))


def test_the_preface_advertises_the_header_list_limit() -> None:
    conn = Connection(Recorder())
    t, flags, _, payload = parse(conn.out)[0]
    assert (t, flags) == (FrameType.SETTINGS, 0)
    assert (Setting.MAX_HEADER_LIST_SIZE, 16 << 10) in frames.parse_settings(payload)


def test_a_ping_flood_gets_too_many_pings_after_two_strikes() -> None:
    conn, _, _ = connected()
    conn.receive(ping(1) + ping(2) + ping(3))  # the first is free, then two strikes
    assert not conn.closed
    assert [t for t, _, _, _ in parse(conn.out)] == [FrameType.PING] * 3
    conn.receive(ping(4))
    assert goaway(conn) == (ErrorCode.ENHANCE_YOUR_CALM, b"too_many_pings")


def test_pings_at_the_keepalive_policy_never_strike() -> None:
    """With a stream open, one PING per MinTime (grpc-go's 5 minutes) is fine forever;
    with none open, one per 2 hours."""
    conn, _, clock = connected()
    open_stream(conn, 1)
    for i in range(10):
        conn.receive(ping(i))
        clock.now += DEFAULT_LIMITS.ping_min_interval_s
    del conn.streams[1]
    for i in range(10):
        clock.now += DEFAULT_LIMITS.ping_idle_interval_s
        conn.receive(ping(i))
    assert not conn.closed


def test_pings_riding_along_with_our_answers_never_strike() -> None:
    """A BDP probe or keepalive after each DATA or HEADERS we send clears the strikes."""
    conn, _, _ = connected()
    open_stream(conn, 1)
    stream = conn.streams[1]
    conn.send_headers(stream, b"\x88")
    for i in range(20):
        conn.receive(ping(i) + ping(100 + i))  # two quick ones: one strike at most
        conn.send_data(stream, b"x")
    assert not conn.closed


def test_idle_pings_strike_sooner() -> None:
    conn, _, clock = connected()
    for i in range(3):
        conn.receive(ping(i))
        clock.now += DEFAULT_LIMITS.ping_min_interval_s  # fine with a stream, not without
    conn.receive(ping(3))
    assert goaway(conn)[1] == b"too_many_pings"


def test_a_settings_flood_is_cut_off_and_time_or_an_answer_refills_it() -> None:
    conn, _, clock = connected(Limits(settings_burst=4, settings_per_s=1.0))
    conn.receive(frames.settings({}) * 3)  # the preface's took one token
    assert [t for t, _, _, _ in parse(conn.out)] == [FrameType.SETTINGS] * 3  # the ACKs
    clock.now += 2.0
    conn.receive(frames.settings({}) * 2)
    open_stream(conn, 1)
    conn.send_headers(conn.streams[1], b"\x88")  # an answer: the bucket is full again
    conn.receive(frames.settings({}) * 4)
    assert not conn.closed
    conn.receive(frames.settings({}))
    assert goaway(conn) == (ErrorCode.ENHANCE_YOUR_CALM, b"too_many_settings")


def test_a_settings_frame_of_too_many_entries_is_refused() -> None:
    conn, _, _ = connected()
    conn.receive(frames.frame(FrameType.SETTINGS, 0, 0,
                              struct.pack(">HL", Setting.ENABLE_PUSH, 0) * 33))
    assert goaway(conn) == (ErrorCode.ENHANCE_YOUR_CALM, b"too_many_settings_entries")


def test_rapid_reset_is_cut_off_at_nghttp2s_burst_and_rate() -> None:
    conn, rec, clock = connected()
    burst = b"".join(frames.headers(sid, hpack.encode(REQUEST), end_stream=False,
                                    max_frame=16384) + frames.rst_stream(sid, ErrorCode.CANCEL)
                     for sid in range(1, 2 * DEFAULT_LIMITS.reset_burst, 2))
    conn.receive(burst)
    assert not conn.closed and len(rec.resets) == DEFAULT_LIMITS.reset_burst
    clock.now += 1.0  # 33 more a second
    sid = 2 * DEFAULT_LIMITS.reset_burst + 1
    for _ in range(int(DEFAULT_LIMITS.reset_per_s)):
        open_stream(conn, sid)
        conn.receive(frames.rst_stream(sid, ErrorCode.CANCEL))
        sid += 2
    assert not conn.closed
    open_stream(conn, sid)
    conn.receive(frames.rst_stream(sid, ErrorCode.CANCEL))
    assert goaway(conn) == (ErrorCode.ENHANCE_YOUR_CALM, b"too_many_resets")


def test_resets_of_streams_we_already_answered_are_free() -> None:
    conn, _, _ = connected(Limits(reset_burst=2, reset_per_s=0.0))
    for sid in range(1, 20, 2):
        conn.receive(frames.headers(sid, hpack.encode(REQUEST), end_stream=True,
                                    max_frame=16384))
        conn.send_headers(conn.streams[sid], b"\x88", end_stream=True)
        conn.receive(frames.rst_stream(sid, ErrorCode.CANCEL))
    assert not conn.closed


@pytest.mark.parametrize("empty", [
    frames.frame(FrameType.DATA, 0, 1, b""),
    frames.frame(FrameType.DATA, Flag.PADDED, 1, b"\x00"),  # empty once unpadded
], ids=["data", "padded-data"])
def test_empty_data_frames_in_a_row_end_the_connection(empty: bytes) -> None:
    conn, rec, _ = connected()
    open_stream(conn, 1)
    conn.receive(empty + frames.frame(FrameType.DATA, 0, 1, b"x") + empty)
    assert not conn.closed
    conn.receive(empty)
    assert goaway(conn) == (ErrorCode.ENHANCE_YOUR_CALM, b"too_many_empty_frames")
    conn, rec, _ = connected()
    open_stream(conn, 1)
    conn.receive(empty + frames.frame(FrameType.DATA, Flag.END_STREAM, 1, b""))
    assert not conn.closed and rec.data[-1] == (1, b"", True)  # an empty END_STREAM is fine


def test_an_empty_continuation_flood_ends_the_connection() -> None:
    """The 2024 CONTINUATION flood: frames that never end the header block."""
    conn, _, _ = connected()
    block = hpack.encode(REQUEST)
    conn.receive(frames.frame(FrameType.HEADERS, 0, 1, block[:4])
                 + frames.frame(FrameType.CONTINUATION, 0, 1, b""))
    assert not conn.closed
    conn.receive(frames.frame(FrameType.CONTINUATION, 0, 1, b""))
    assert goaway(conn) == (ErrorCode.ENHANCE_YOUR_CALM, b"too_many_empty_frames")


def test_a_header_list_over_the_limit_is_refused_and_the_table_stays_in_step() -> None:
    """Section 10.5.1: the block is still decoded (HPACK state), the request refused, the
    connection goes on and the next request, indexing into the same table, is served."""
    conn, rec, _ = connected(Limits(max_header_list=1024))
    big = hpack.encode(REQUEST) + b"\x40\x05x-big" + hpack.encode_int(1000, 7) + b"b" * 1000
    too_large = rec.too_large
    conn.receive(frames.headers(1, big, end_stream=True, max_frame=16384))
    expected = sum(len(n) + len(v) + 32 for n, v in REQUEST) + 5 + 1000 + 32
    assert too_large == [(1, expected)] and not rec.requests and not conn.closed
    conn.receive(frames.headers(3, hpack.encode(REQUEST) + b"\xbe", end_stream=True,
                                max_frame=16384))  # 62: the x-big entry just added
    assert not conn.closed and too_large == [(1, expected), (3, expected)]
    conn.receive(frames.headers(5, hpack.encode(REQUEST), end_stream=True, max_frame=16384))
    assert rec.requests == [(5, REQUEST, True)]
