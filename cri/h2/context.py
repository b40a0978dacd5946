"""The `grpc.ServicerContext` our server hands to handlers.

Handlers run on the event loop (the hot reads) or on a worker thread; the loop cancels a
call (client RST_STREAM, disconnect, deadline) by `cancel_from_loop`, after which
`is_active()` is False and the callbacks have run exactly once.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import grpc

from cri.h2 import hpack, wire
from cri.h2.wire import Metadata

log = logging.getLogger(__name__)


class Aborted(Exception):
    """Raised by `abort`: the handler's call ends with the status set on the context."""


class Context(grpc.ServicerContext):
    def __init__(self, *, headers: list[hpack.Header], peer: str, deadline: float | None,
                 on_cancel: Callable[[], None] = lambda: None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._headers = headers
        self._metadata: Metadata | None = None  # built when asked for
        self._peer = peer
        self.deadline = deadline  # time.monotonic() seconds, or None
        self._monotonic = monotonic
        self.on_cancel = on_cancel  # what the server does when the handler cancels
        self.status_code: grpc.StatusCode | None = None
        self.status_details = ""
        self.initial_md: Metadata = ()
        self.trailing_md: Metadata = ()
        self.initial_sent = False
        self._active = True
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] | None = []

    # -- what the server drives -----------------------------------------------------------

    def end(self) -> None:
        """The call is over, however it ended: inactive, callbacks run once."""
        self._active = False
        with self._lock:
            callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            try:
                callback()
            except Exception:  # a callback's failure must not hide the call's end
                log.exception("RPC termination callback failed")

    # -- grpc.RpcContext ----------------------------------------------------------------

    def is_active(self) -> bool:
        return self._active

    def time_remaining(self) -> float | None:  # type: ignore[override]  # None: no deadline
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self._monotonic())

    def cancel(self) -> None:
        self.on_cancel()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self._lock:
            if self._callbacks is None:
                return False
            self._callbacks.append(callback)
            return True

    # -- grpc.ServicerContext -----------------------------------------------------------

    def invocation_metadata(self) -> Metadata:
        if self._metadata is None:
            self._metadata = wire.invocation_metadata(self._headers)
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def peer_identities(self) -> None:
        return None  # no TLS on a unix socket

    def peer_identity_key(self) -> None:
        return None

    def auth_context(self) -> dict[str, Any]:
        return {}

    def send_initial_metadata(self, initial_metadata: Metadata) -> None:
        if self.initial_sent:
            raise ValueError("initial metadata was already sent")
        self.initial_md = tuple(initial_metadata)

    def set_trailing_metadata(self, trailing_metadata: Metadata) -> None:
        self.trailing_md = tuple(trailing_metadata)

    def trailing_metadata(self) -> Metadata:
        return self.trailing_md

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        if code == grpc.StatusCode.OK:
            raise ValueError("abort() needs a status code other than OK")
        self.status_code = code
        self.status_details = details
        raise Aborted(details)

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        self.set_trailing_metadata(tuple(status.trailing_metadata or ()))
        self.abort(status.code, status.details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.status_code = code

    def set_details(self, details: str) -> None:
        self.status_details = details

    def code(self) -> grpc.StatusCode | None:
        return self.status_code

    def details(self) -> str:
        return self.status_details

    def set_compression(self, compression: grpc.Compression) -> None:
        pass  # answers go uncompressed, which grpc's compression.md allows

    def disable_next_message_compression(self) -> None:
        pass  # we never compress
