"""Requests on one connection: the `connection.Handler` that turns a HEADERS block into a
gRPC `Call` (method lookup, content type, deadline, concurrency limit)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from cri.h2 import compression, hpack, wire
from cri.h2.calls import Call, Runtime
from cri.h2.connection import Connection
from cri.h2.context import Context
from cri.h2.guard import DEFAULT_LIMITS, Limits
from cri.h2.stream import Stream

log = logging.getLogger(__name__)


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str, headers: list[hpack.Header]) -> None:
        self.method = method
        self._headers = headers

    @property  # an attribute in grpc's stubs; built here only when a handler asks
    def invocation_metadata(self) -> wire.Metadata:  # type: ignore[override]
        return wire.invocation_metadata(self._headers)


class Lookup:
    """Method path -> handler, through the GenericRpcHandlers (first that answers)."""

    def __init__(self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]) -> None:
        self._handlers = tuple(handlers)

    def __call__(self, method: str, headers: list[hpack.Header]
                 ) -> grpc.RpcMethodHandler[Any, Any] | None:
        details = _Details(method, headers)
        for generic in self._handlers:
            found = generic.service(details)
            if found is not None:
                return found
        return None


class Admission:
    """Calls that may hold a worker (running or queued) at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self.held >= self.limit:
                return False
            self.held += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.held -= 1


class Session:
    def __init__(self, *, runtime: Runtime, lookup: Lookup, inline: frozenset[str],
                 admission: Admission, peer: str, limits: Limits = DEFAULT_LIMITS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self.lookup = lookup
        self.inline = inline
        self.admission = admission
        self.peer = peer
        self.monotonic = monotonic
        self.conn = Connection(self, limits=limits, monotonic=monotonic)

    def _refuse(self, stream: Stream, status: bytes) -> None:
        self.conn.send_headers(stream, hpack.encode([(b":status", status)]), end_stream=True)

    def _status_only(self, stream: Stream, code: grpc.StatusCode, details: str) -> None:
        self.conn.send_headers(stream, wire.trailers(code, details, only=True),
                               end_stream=True)

    def on_request(self, stream: Stream, headers: list[hpack.Header],
                   end_stream: bool) -> None:
        method = path = content_type = timeout = encoding = b""
        for name, value in headers:
            if name == b":path":
                path = value
            elif name == b":method":
                method = value
            elif name == b"content-type":
                content_type = value
            elif name == b"grpc-timeout":
                timeout = value
            elif name == b"grpc-encoding":
                encoding = value
        if method != b"POST":
            self._refuse(stream, b"405")
            return
        if not content_type.startswith(wire.CONTENT_TYPE):
            self._refuse(stream, b"415")
            return
        if not compression.accepted(encoding):
            self._status_only(stream, grpc.StatusCode.UNIMPLEMENTED,
                              compression.unsupported(encoding))
            return
        method_name = path.decode("utf-8", "replace")
        try:
            deadline = self.monotonic() + wire.parse_timeout(timeout) if timeout else None
        except wire.BadTimeout as exc:
            self._status_only(stream, grpc.StatusCode.INTERNAL, str(exc))
            return
        handler = self.lookup(method_name, headers)
        if handler is None:
            self._status_only(stream, grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
            return
        inline = method_name in self.inline and not (handler.request_streaming
                                              or handler.response_streaming)
        if not inline and not self.admission.acquire():
            self._status_only(stream, grpc.StatusCode.RESOURCE_EXHAUSTED,
                              "Concurrent RPC limit exceeded!")
            return
        call = Call(runtime=self.runtime, conn=self.conn, stream=stream, handler=handler,
                    method=method_name, inline=inline, holds_slot=not inline,
                    encoding=encoding,
                    ctx=Context(headers=headers, peer=self.peer, deadline=deadline,
                                monotonic=self.monotonic))
        call.ctx.on_cancel = lambda: self._handler_cancel(call)
        stream.call = call
        if deadline is not None and not inline:
            self.runtime.watch(call)
        if handler.request_streaming:
            call.start()
        if end_stream:
            call.receive(b"", True)

    def _handler_cancel(self, call: Call) -> None:
        self.runtime.post(lambda: call.cancel(code=grpc.StatusCode.CANCELLED,
                                              details="Cancelled by the handler"))

    def on_data(self, stream: Stream, data: bytes, end_stream: bool) -> None:
        call = stream.call
        if isinstance(call, Call):
            call.receive(data, end_stream)
        else:
            self.conn.consumed(stream, len(data))

    def on_headers_too_large(self, stream: Stream, size: int) -> None:
        details = (f"request header list of {size} bytes exceeds the limit of "
                   f"{self.conn.guard.limits.max_header_list}")
        call = stream.call
        if isinstance(call, Call):  # the client's trailers
            call.cancel(code=grpc.StatusCode.RESOURCE_EXHAUSTED, details=details)
        else:
            self._status_only(stream, grpc.StatusCode.RESOURCE_EXHAUSTED, details)

    def on_reset(self, stream: Stream) -> None:
        call = stream.call
        if isinstance(call, Call):
            call.cancel()

    def on_drained(self, stream: Stream) -> None:
        call = stream.call
        if isinstance(call, Call) and not call.inline:
            call.drained()
