"""One HTTP/2 stream's state, and what a connection tells the layer above about it."""
from __future__ import annotations

from collections import deque
from typing import Protocol

from cri.h2 import hpack

OUR_STREAM_WINDOW = 1 << 20  # the receive window we give each stream


class Stream:
    __slots__ = (
        "call",
        "headers_sent",
        "id",
        "local_closed",
        "out_bytes",
        "outq",
        "recv_window",
        "remote_closed",
        "send_window",
        "trailers",
        "unacked",
    )

    def __init__(self, stream_id: int, *, send_window: int) -> None:
        self.id = stream_id
        self.send_window = send_window
        self.recv_window = OUR_STREAM_WINDOW
        self.unacked = 0  # bytes received and consumed, not yet given back
        self.outq: deque[bytes | memoryview] = deque()  # DATA waiting for window
        self.out_bytes = 0
        self.trailers: bytes | None = None  # the header block ending the stream, once known
        self.remote_closed = False
        self.local_closed = False
        self.headers_sent = False
        self.call: object = None  # the request's handler state (cri.h2.calls)


class Handler(Protocol):
    def on_request(self, stream: Stream, headers: list[hpack.Header],
                   end_stream: bool) -> None: ...

    def on_data(self, stream: Stream, data: bytes, end_stream: bool) -> None: ...

    def on_reset(self, stream: Stream) -> None: ...

    def on_headers_too_large(self, stream: Stream, size: int) -> None:
        """The request's header list (or its trailers), `size` bytes, is over the
        SETTINGS_MAX_HEADER_LIST_SIZE we advertised; the stream is open, unanswered."""

    def on_drained(self, stream: Stream) -> None:
        """Some of the stream's queued output left for the socket."""
