"""The gRPC call layer: one `Call` per HTTP/2 stream, run through the handler grpc's
`GenericRpcHandler`s return (unary_unary, unary_stream, stream_unary, stream_stream).

A call whose method is in the server's inline set runs on the event loop as soon as its
request is complete (the hot reads: no blocking, no thread hop); every other call runs on
a worker thread and hands what it produces back to the loop (`Runtime.post`). A worker
that streams answers waits while more than `HIGH_WATER` bytes of them are not yet framed
(the client reads slowly or its window is closed), so a stream never grows without bound.
"""
from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import grpc

from cri.h2 import compression, wire
from cri.h2.connection import Connection
from cri.h2.context import Aborted, Context
from cri.h2.frames import ErrorCode
from cri.h2.stream import Stream

log = logging.getLogger(__name__)

HIGH_WATER = 1 << 20  # bytes of answers a streaming worker may have queued
SLOW_INLINE_S = 0.05  # an inline call slower than this is logged: it held up the loop
QUEUED_REQUESTS = 4 << 20  # bytes of client-streamed requests queued before we stop reading
_Message = tuple[bool, bytes]  # compressed flag, the bytes as received
_END = object()
_CANCELLED = object()


class Cancelled(Exception):
    """The client cancelled (RST_STREAM, disconnect) or the deadline passed."""


class Runtime(Protocol):
    """What a call needs from the server."""

    max_message: int

    def post(self, fn: Callable[[], None]) -> None: ...

    def submit(self, fn: Callable[[], None]) -> None: ...

    def release(self) -> None: ...

    def watch(self, call: Call) -> None: ...


class Call:
    def __init__(self, *, runtime: Runtime, conn: Connection, stream: Stream,
                 handler: grpc.RpcMethodHandler[Any, Any], method: str, ctx: Context,
                 inline: bool, holds_slot: bool, encoding: bytes = b"") -> None:
        self.runtime = runtime
        self.encoding = encoding  # grpc-encoding of the request (one we accept)
        self.conn = conn
        self.stream = stream
        self.handler = handler
        self.method = method
        self.ctx = ctx
        self.inline = inline
        self.holds_slot = holds_slot
        self.done = False  # the status went out (loop thread)
        self.started = False
        self._buf = bytearray()
        self._messages: list[_Message] = []
        self._requests: queue.Queue[object] | None = (
            queue.Queue() if handler.request_streaming else None)
        self._queued = 0  # bytes of requests waiting for the handler
        self._owed = 0  # received bytes whose window we hold back
        self._cond = threading.Condition()
        self._posted = 0  # answer bytes the worker posted
        self._enqueued = 0  # of those, handed to the connection (loop)
        self._framed = 0  # of those, framed as DATA (loop)

    # -- loop thread ----------------------------------------------------------------------

    def receive(self, data: bytes, end_stream: bool) -> None:
        if self.done:
            self.conn.consumed(self.stream, len(data))
            return
        if self._requests is not None and self._queued >= QUEUED_REQUESTS:
            self._owed += len(data)
        else:
            self.conn.consumed(self.stream, len(data))
        buf = self._buf
        buf += data
        while len(buf) >= wire.PREFIX.size:
            compressed, length = wire.PREFIX.unpack_from(buf)
            if length > self.runtime.max_message:
                self.finish(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"Received message larger than max ({length} vs. "
                            f"{self.runtime.max_message})")
                return
            if compressed and self.encoding in compression.IDENTITY:
                self.finish(grpc.StatusCode.INTERNAL,
                            "compressed flag set on a message without a grpc-encoding "
                            "(other than identity)")
                return
            end = wire.PREFIX.size + length
            if len(buf) < end:
                break
            message = (bool(compressed), bytes(buf[wire.PREFIX.size:end]))
            del buf[:end]
            if self._requests is None:
                self._messages.append(message)
            else:
                self._queued += end
                self._requests.put(message)
        if not end_stream:
            return
        if buf:
            self.finish(grpc.StatusCode.INTERNAL, "request ends inside a message")
        elif self._requests is not None:
            self._requests.put(_END)
        elif len(self._messages) != 1:
            self.finish(grpc.StatusCode.INTERNAL,
                        f"expected one request message, got {len(self._messages)}")
        else:
            self.start()

    def start(self) -> None:
        self.started = True
        if self.inline:
            t0 = time.monotonic()
            self._execute()
            self.ctx.end()
            took = time.monotonic() - t0
            if took > SLOW_INLINE_S:  # every other call on the loop waited this long
                log.warning("%s took %.0f ms on the event loop", self.method, took * 1000)
        else:
            self.runtime.submit(self._run)

    def send(self, data: bytes) -> None:
        """One answer message: its length prefix and its bytes (not copied together)."""
        if self.done:
            return
        if not self.stream.headers_sent:
            self.conn.send_headers(self.stream, wire.response_headers(self.ctx.initial_md))
            self.ctx.initial_sent = True
        self.conn.send_data(self.stream, wire.PREFIX.pack(0, len(data)))
        self.conn.send_data(self.stream, data)
        if not self.inline:  # a worker may be waiting for room
            self._enqueued += wire.PREFIX.size + len(data)
            self.drained()

    def finish(self, code: grpc.StatusCode, details: str) -> None:
        """Send the status; the call is over (a handler still running sees
        is_active() False and its request stream ends)."""
        if self.done:
            return
        self.done = True
        md = self.ctx.trailing_md
        if self.stream.headers_sent:
            self.conn.send_trailers(self.stream, wire.trailers(code, details, md))
        else:
            self.conn.send_headers(self.stream, wire.trailers(code, details, md, only=True),
                                   end_stream=True)
        if not self.inline:
            self._over()

    def cancel(self, *, code: grpc.StatusCode | None = None, details: str = "") -> None:
        """The client went away, or (with `code`) the deadline passed: end the call."""
        if code is not None:
            self.finish(code, details)
            if not self.stream.local_closed:  # the status waits behind a closed window
                self.conn.reset(self.stream.id, ErrorCode.CANCEL)
        self.done = True
        self._over()

    def _over(self) -> None:
        if not self.started and self.holds_slot:  # never reached a worker
            self.holds_slot = False
            self.runtime.release()
        self.ctx.end()
        if self._requests is not None:
            self._requests.put(_CANCELLED)
        with self._cond:
            self._cond.notify_all()

    def drained(self) -> None:
        with self._cond:
            self._framed = self._enqueued - self.stream.out_bytes
            self._cond.notify_all()

    def _took(self, size: int) -> None:
        self._queued -= size
        if self._owed and self._queued < QUEUED_REQUESTS and not self.done:
            owed, self._owed = self._owed, 0
            self.conn.consumed(self.stream, owed)

    # -- the handler, inline or on a worker -------------------------------------------------

    def _run(self) -> None:
        try:
            self._execute()
        finally:
            self.ctx.end()
            if self.holds_slot:
                self.holds_slot = False
                self.runtime.release()

    def _emit(self, fn: Callable[[], None]) -> None:
        if self.inline:
            fn()
        else:
            self.runtime.post(fn)

    def _execute(self) -> None:
        h = self.handler
        ctx = self.ctx
        if ctx.deadline is not None and not ctx.time_remaining():
            self._emit(lambda: self.finish(grpc.StatusCode.DEADLINE_EXCEEDED,
                                           "Deadline Exceeded"))
            return
        try:
            if h.request_streaming:
                request: Any = self._request_iterator()
            else:
                request = self._decode(self._messages[0])
            if h.response_streaming:
                behaviour = h.stream_stream if h.request_streaming else h.unary_stream
                assert behaviour is not None
                answers = behaviour(request, ctx)
                try:
                    for answer in answers:
                        if not ctx.is_active():
                            return
                        self._answer(answer)
                finally:
                    if hasattr(answers, "close"):
                        answers.close()
            else:
                unary = h.stream_unary if h.request_streaming else h.unary_unary
                assert unary is not None
                answer = unary(request, ctx)
                if ctx.status_code in (None, grpc.StatusCode.OK):
                    self._answer(answer)
        except _Failed as failed:
            code, details = failed.code, failed.details
        except Aborted:
            code, details = ctx.status_code or grpc.StatusCode.UNKNOWN, ctx.status_details
        except Cancelled:
            return
        except Exception as exc:
            if not ctx.is_active():
                return
            log.exception("%s: the handler failed", self.method)
            code = ctx.status_code if ctx.status_code not in (None, grpc.StatusCode.OK) \
                else grpc.StatusCode.UNKNOWN
            details = ctx.status_details or f"Exception calling application: {exc}"
        else:
            code, details = ctx.status_code or grpc.StatusCode.OK, ctx.status_details
        self._emit(lambda: self.finish(code, details))

    def _decode(self, message: _Message) -> Any:
        """The request of a message; inflated here, on the worker when there is one."""
        compressed, body = message
        if compressed:
            try:
                body = compression.decompress(self.encoding, body,
                                              limit=self.runtime.max_message)
            except compression.Refused as exc:
                raise _Failed(exc.code, exc.details) from None
        decode = self.handler.request_deserializer
        try:
            return decode(body) if decode is not None else body
        except Exception as exc:
            log.debug("%s: undecodable request: %s", self.method, exc)
            raise _Failed(grpc.StatusCode.INTERNAL, "Exception deserializing request!") \
                from None

    def _answer(self, answer: Any) -> None:
        encode = self.handler.response_serializer
        try:
            data = bytes(encode(answer) if encode is not None else answer)
        except Exception as exc:
            log.error("%s: cannot serialize the answer: %s", self.method, exc)
            raise _Failed(grpc.StatusCode.INTERNAL, "Failed to serialize response!") \
                from None
        if len(data) > self.runtime.max_message:
            raise _Failed(grpc.StatusCode.RESOURCE_EXHAUSTED, f"Sent message larger than max "
                          f"({len(data)} vs. {self.runtime.max_message})")
        if self.inline:
            self.send(data)
            return
        with self._cond:
            self._posted += wire.PREFIX.size + len(data)
        self.runtime.post(lambda: self.send(data))
        with self._cond:
            while self._posted - self._framed > HIGH_WATER and self.ctx.is_active():
                self._cond.wait(1.0)

    def _request_iterator(self) -> Iterator[Any]:
        assert self._requests is not None
        while True:
            item = self._requests.get()
            if item is _END:
                return
            if item is _CANCELLED:
                raise Cancelled(f"{self.method} was cancelled")
            assert isinstance(item, tuple)
            size = len(item[1]) + wire.PREFIX.size
            self.runtime.post(functools.partial(self._took, size))
            yield self._decode(item)


class _Failed(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
