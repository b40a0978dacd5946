"""One server-side HTTP/2 connection as a state machine without I/O.

`receive(data)` parses what the peer sent and calls the `Handler` for each request event;
what we answer accumulates in `out`, for the event loop to write. Everything here runs on
the event loop's thread. Flow control is honoured both ways: we never send more DATA than
the peer's connection and stream windows allow (the rest waits for WINDOW_UPDATE), and we
give back receive window as the handler consumes what it was handed (the sending half is
`sender.Sender`). Frames that cost work without a call are bounded by `guard.Guard`, and
a request whose header list is over the SETTINGS_MAX_HEADER_LIST_SIZE we advertise is
handed to the handler to refuse, its block still decoded (RFC 9113 section 10.5.1).
"""
from __future__ import annotations

import struct
import time
from collections.abc import Callable

from cri.h2 import frames, hpack
from cri.h2.frames import ConnectionFailure, ErrorCode, Flag, FrameType, Setting, StreamError
from cri.h2.guard import DEFAULT_LIMITS, Guard, Limits
from cri.h2.sender import Sender
from cri.h2.stream import OUR_STREAM_WINDOW, Handler, Stream

MAX_HEADER_BLOCK = 256 << 10  # a header block (HEADERS + CONTINUATIONs) larger is refused
OUR_CONN_WINDOW = 16 << 20
OUR_MAX_STREAMS = 4096


class Connection(Sender):
    def __init__(self, handler: Handler, *, limits: Limits = DEFAULT_LIMITS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(handler, Guard(limits, monotonic))
        self.closed = False  # no more input will be read; close once `out` is written
        self._buf = bytearray()
        self._preface = False
        self._decoder = hpack.Decoder(max_list_size=limits.max_header_list)
        self._last_id = 0
        self._continuation: tuple[int, int, bytearray] | None = None  # id, flags, block
        self._peer_window = frames.DEFAULT_WINDOW  # peer's initial stream window
        self._recv_window = OUR_CONN_WINDOW
        self._conn_unacked = 0
        self.going_away = False
        self.out += frames.settings({Setting.MAX_CONCURRENT_STREAMS: OUR_MAX_STREAMS,
                                     Setting.INITIAL_WINDOW_SIZE: OUR_STREAM_WINDOW,
                                     Setting.ENABLE_PUSH: 0,
                                     Setting.MAX_HEADER_LIST_SIZE: limits.max_header_list})
        self.out += frames.window_update(0, OUR_CONN_WINDOW - frames.DEFAULT_WINDOW)

    # -- input -------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Handle the bytes the peer sent; a protocol error ends in GOAWAY and `closed`."""
        if self.closed:
            return
        buf = self._buf
        buf += data
        try:
            pos = 0
            if not self._preface:
                if len(buf) < len(frames.PREFACE):
                    if not frames.PREFACE.startswith(bytes(buf)):
                        raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, "not HTTP/2")
                    return
                if buf[:len(frames.PREFACE)] != frames.PREFACE:
                    raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, "bad client preface")
                self._preface = True
                pos = len(frames.PREFACE)
            end = len(buf)
            while end - pos >= frames.HEADER_LEN:
                length, ftype, flags, sid = frames.parse_header(buf, pos)
                if length > frames.DEFAULT_MAX_FRAME:
                    raise ConnectionFailure(ErrorCode.FRAME_SIZE_ERROR,
                                           f"frame of {length} bytes")
                if end - pos - frames.HEADER_LEN < length:
                    break
                start = pos + frames.HEADER_LEN
                payload = bytes(buf[start:start + length])
                pos = start + length
                try:
                    self._frame(ftype, flags, sid, payload)
                except StreamError as exc:
                    self.reset(exc.stream_id, exc.code)
                if self.closed:
                    return
            del buf[:pos]
        except ConnectionFailure as exc:
            self.fail(exc.code, str(exc))

    def fail(self, code: ErrorCode, message: str) -> None:
        """A connection error: GOAWAY, every stream reset, nothing more read."""
        if self.closed:
            return
        self.out += frames.goaway(self._last_id, code, message.encode()[:256])
        self.lost()

    def lost(self) -> None:
        """The transport is gone (or we gave up on it): every open stream is cancelled."""
        self.closed = True
        self._buf.clear()
        streams, self.streams = self.streams, {}
        self._blocked.clear()
        for stream in streams.values():
            if not stream.local_closed:
                stream.local_closed = True
                self.handler.on_reset(stream)

    def _frame(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if self._continuation is not None:
            if ftype != frames.CONTINUATION or sid != self._continuation[0]:
                raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, "CONTINUATION expected")
            _, first_flags, block = self._continuation
            self.guard.payload(len(payload), ends=bool(flags & Flag.END_HEADERS))
            block += payload
            if len(block) > MAX_HEADER_BLOCK:
                raise ConnectionFailure(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
            if flags & Flag.END_HEADERS:
                self._continuation = None
                self._header_block(sid, first_flags, bytes(block))
            return
        if ftype == frames.DATA:
            self._data(flags, sid, payload)
        elif ftype == frames.HEADERS:
            self._headers(flags, sid, payload)
        elif ftype == frames.SETTINGS:
            self._settings(flags, sid, payload)
        elif ftype == frames.WINDOW_UPDATE:
            self._window_update(sid, payload)
        elif ftype == frames.PING:
            if sid or len(payload) != 8:
                raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR if sid else
                                       ErrorCode.FRAME_SIZE_ERROR, "bad PING")
            if not flags & Flag.ACK:
                self.out += frames.ping_ack(payload)
                self.guard.ping(streams_open=bool(self.streams))
        elif ftype == frames.RST_STREAM:
            self._rst_stream(sid, payload)
        elif ftype == frames.GOAWAY:
            if sid:
                raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
            self.going_away = True
        elif ftype == frames.PRIORITY:
            if not sid:
                raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
            if len(payload) != 5:
                raise StreamError(sid, ErrorCode.FRAME_SIZE_ERROR, "PRIORITY of wrong size")
        elif ftype in (frames.PUSH_PROMISE, frames.CONTINUATION):
            raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, f"unexpected {FrameType(ftype).name}")
        # other frame types are ignored (section 4.1)

    def _headers(self, flags: int, sid: int, payload: bytes) -> None:
        if not sid or not sid % 2:
            raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, f"HEADERS on stream {sid}")
        payload = frames.strip_padding(sid, flags, payload)
        if flags & Flag.PRIORITY:
            if len(payload) < 5:
                raise ConnectionFailure(ErrorCode.FRAME_SIZE_ERROR, "HEADERS priority cut short")
            if struct.unpack_from(">L", payload)[0] & frames.MAX_WINDOW == sid:
                raise StreamError(sid, ErrorCode.PROTOCOL_ERROR, "stream depends on itself")
            payload = payload[5:]
        self.guard.payload(len(payload), ends=bool(flags & (Flag.END_HEADERS | Flag.END_STREAM)))
        if flags & Flag.END_HEADERS:
            self._header_block(sid, flags, payload)
        else:
            self._continuation = (sid, flags, bytearray(payload))

    def _header_block(self, sid: int, flags: int, block: bytes) -> None:
        oversize = 0  # the size of a header list beyond our SETTINGS_MAX_HEADER_LIST_SIZE
        try:
            headers = self._decoder.decode(block)  # always: the table must stay in step
        except hpack.HeaderListTooLarge as exc:
            headers, oversize = [], exc.size
        except hpack.HpackError as exc:
            raise ConnectionFailure(ErrorCode.COMPRESSION_ERROR, str(exc)) from None
        end_stream = bool(flags & Flag.END_STREAM)
        stream = self.streams.get(sid)
        if stream is not None:  # trailers from the client
            if stream.remote_closed:
                raise ConnectionFailure(ErrorCode.STREAM_CLOSED, f"stream {sid} is closed")
            if not end_stream:
                raise StreamError(sid, ErrorCode.PROTOCOL_ERROR, "trailers without END_STREAM")
            self._remote_end(stream)
            if oversize:
                self.handler.on_headers_too_large(stream, oversize)
            else:
                self.handler.on_data(stream, b"", True)
            return
        if sid <= self._last_id:
            raise ConnectionFailure(ErrorCode.STREAM_CLOSED if sid % 2 else
                                   ErrorCode.PROTOCOL_ERROR, f"HEADERS on closed stream {sid}")
        self._last_id = sid
        if self.going_away:
            self.out += frames.rst_stream(sid, ErrorCode.REFUSED_STREAM)
            return
        if len(self.streams) >= OUR_MAX_STREAMS:
            self.out += frames.rst_stream(sid, ErrorCode.REFUSED_STREAM)
            return
        stream = Stream(sid, send_window=self._peer_window)
        self.streams[sid] = stream
        stream.remote_closed = end_stream
        if oversize:  # section 10.5.1: refused, the connection goes on
            self.handler.on_headers_too_large(stream, oversize)
        else:
            self.handler.on_request(stream, headers, end_stream)

    def _data(self, flags: int, sid: int, payload: bytes) -> None:
        if not sid:
            raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        data = frames.strip_padding(sid, flags, payload)
        self.guard.payload(len(data), ends=bool(flags & Flag.END_STREAM))  # padding is free
        if size > self._recv_window:
            raise ConnectionFailure(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the window")
        self._recv_window -= size
        stream = self.streams.get(sid)
        if stream is None:
            if sid > self._last_id:
                raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, f"DATA on idle stream {sid}")
            self._give_back_conn(size)  # a stream we already ended: drop what still arrives
            return
        if stream.remote_closed:
            self._give_back_conn(size)
            raise StreamError(sid, ErrorCode.STREAM_CLOSED, f"DATA after END_STREAM on {sid}")
        if size > stream.recv_window:
            self._give_back_conn(size)
            raise StreamError(sid, ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream window")
        stream.recv_window -= size
        padding = size - len(data)
        if padding:
            self.consumed(stream, padding)
        end_stream = bool(flags & Flag.END_STREAM)
        if end_stream:
            self._remote_end(stream)
        self.handler.on_data(stream, data, end_stream)

    def _remote_end(self, stream: Stream) -> None:
        stream.remote_closed = True
        if stream.local_closed:
            self.streams.pop(stream.id, None)

    def consumed(self, stream: Stream, size: int) -> None:
        """The handler is done with `size` received bytes: give the window back."""
        self._give_back_conn(size)
        if stream.remote_closed or self.closed:
            return
        stream.unacked += size
        if stream.unacked >= OUR_STREAM_WINDOW // 2:
            self.out += frames.window_update(stream.id, stream.unacked)
            stream.recv_window += stream.unacked
            stream.unacked = 0

    def _give_back_conn(self, size: int) -> None:
        self._conn_unacked += size
        if self._conn_unacked >= OUR_CONN_WINDOW // 4:
            self.out += frames.window_update(0, self._conn_unacked)
            self._recv_window += self._conn_unacked
            self._conn_unacked = 0

    def _settings(self, flags: int, sid: int, payload: bytes) -> None:
        if sid:
            raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & Flag.ACK:
            if payload:
                raise ConnectionFailure(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with payload")
            return
        values = frames.parse_settings(payload)
        self.guard.settings(len(values))
        for key, value in values:
            if key == Setting.INITIAL_WINDOW_SIZE:
                if value > frames.MAX_WINDOW:
                    raise ConnectionFailure(ErrorCode.FLOW_CONTROL_ERROR, "window too large")
                delta, self._peer_window = value - self._peer_window, value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == Setting.MAX_FRAME_SIZE:
                if not frames.DEFAULT_MAX_FRAME <= value <= frames.MAX_FRAME_LIMIT:
                    raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, f"max frame size {value}")
                self._peer_max_frame = value
            elif key == Setting.ENABLE_PUSH and value > 1:
                raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, f"ENABLE_PUSH {value}")
        self.out += frames.SETTINGS_ACK
        self._pump_blocked()

    def _window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionFailure(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE of wrong size")
        increment = struct.unpack(">L", payload)[0] & frames.MAX_WINDOW
        if not sid:
            if not increment:
                raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > frames.MAX_WINDOW:
                raise ConnectionFailure(ErrorCode.FLOW_CONTROL_ERROR, "window overflow")
            self._pump_blocked()
            return
        stream = self.streams.get(sid)
        if stream is None:
            if sid > self._last_id:
                raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, f"WINDOW_UPDATE on idle {sid}")
            return
        if not increment:
            raise StreamError(sid, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        stream.send_window += increment
        if stream.send_window > frames.MAX_WINDOW:
            raise StreamError(sid, ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow")
        self._pump(stream)

    def _rst_stream(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionFailure(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM of wrong size")
        if not sid or sid > self._last_id:
            raise ConnectionFailure(ErrorCode.PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
        stream = self.streams.pop(sid, None)
        self._blocked.pop(sid, None)
        if stream is not None and not stream.local_closed:
            stream.local_closed = stream.remote_closed = True
            self.handler.on_reset(stream)
            self.guard.reset()

    def goaway(self) -> None:
        """Graceful shutdown: no new streams; the open ones may finish."""
        if not self.going_away and not self.closed:
            self.going_away = True
            self.out += frames.goaway(self._last_id, ErrorCode.NO_ERROR)
