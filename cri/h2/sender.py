"""The sending half of a server-side HTTP/2 connection: HEADERS, DATA and trailers
framed into `out` as far as the peer's connection and stream windows allow (the rest
waits for WINDOW_UPDATE), and stream resets."""
from __future__ import annotations

from cri.h2 import frames
from cri.h2.frames import ErrorCode
from cri.h2.guard import Guard
from cri.h2.stream import Handler, Stream


class Sender:
    def __init__(self, handler: Handler, guard: Guard) -> None:
        self.handler = handler
        self.guard = guard
        self.out = bytearray()
        self.streams: dict[int, Stream] = {}
        self._blocked: dict[int, Stream] = {}  # streams with output waiting for window
        self._peer_max_frame = frames.DEFAULT_MAX_FRAME
        self.send_window = frames.DEFAULT_WINDOW  # connection level, what we may send

    def send_headers(self, stream: Stream, block: bytes, *, end_stream: bool = False) -> None:
        if stream.local_closed:
            return
        stream.headers_sent = True
        if end_stream and stream.outq:
            stream.trailers = block
            return
        self.out += frames.headers(stream.id, block, end_stream=end_stream,
                                   max_frame=self._peer_max_frame)
        self.guard.sent()
        if end_stream:
            self._local_end(stream)

    def send_data(self, stream: Stream, data: bytes | memoryview) -> None:
        if not data or stream.local_closed or stream.trailers is not None:
            return
        stream.outq.append(data)
        stream.out_bytes += len(data)
        self._pump(stream)

    def send_trailers(self, stream: Stream, block: bytes) -> None:
        """End the stream with `block` once its queued DATA has gone out."""
        if stream.local_closed or stream.trailers is not None:
            return
        stream.trailers = block
        self._pump(stream)

    def reset(self, sid: int, code: ErrorCode) -> None:
        stream = self.streams.pop(sid, None)
        self._blocked.pop(sid, None)
        self.out += frames.rst_stream(sid, code)
        if stream is not None and not stream.local_closed:
            stream.local_closed = True
            self.handler.on_reset(stream)

    def _local_end(self, stream: Stream) -> None:
        stream.local_closed = True
        self._blocked.pop(stream.id, None)
        if stream.remote_closed:
            self.streams.pop(stream.id, None)
        else:  # we answered before the request ended: tell the client to stop sending
            self.streams.pop(stream.id, None)
            self.out += frames.rst_stream(stream.id, ErrorCode.NO_ERROR)

    def _pump(self, stream: Stream) -> None:
        """Frame queued DATA as far as both windows allow; then the trailers."""
        q = stream.outq
        out = self.out
        sent = False
        while q:
            room = min(self.send_window, stream.send_window, self._peer_max_frame,
                       stream.out_bytes)
            if room <= 0:
                self._blocked[stream.id] = stream
                break
            out += frames.head(frames.DATA, 0, stream.id, room)
            self.send_window -= room
            stream.send_window -= room
            stream.out_bytes -= room
            while room:
                chunk = q[0]
                if len(chunk) <= room:
                    q.popleft()
                    out += chunk
                    room -= len(chunk)
                else:
                    view = memoryview(chunk)
                    out += view[:room]
                    q[0] = view[room:]
                    room = 0
            sent = True
        if not q:
            self._blocked.pop(stream.id, None)
            if stream.trailers is not None:
                block, stream.trailers = stream.trailers, None
                out += frames.headers(stream.id, block, end_stream=True,
                                      max_frame=self._peer_max_frame)
                self._local_end(stream)
                self.guard.sent()
        if sent:
            self.guard.sent()
            self.handler.on_drained(stream)

    def _pump_blocked(self) -> None:
        for stream in list(self._blocked.values()):
            if self.send_window <= 0:
                return
            self._pump(stream)
