"""The connection to engined: the CRI stubs and the kubeletpy.engine.v1 stub on one channel."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc

from cri.api import engine_pb2_grpc, runtime_pb2_grpc
from cri.ctl.errors import CtlError, from_rpc, not_running
from engine.config import DEFAULT_LISTEN

T = TypeVar("T")
ENDPOINT_ENV = "ENGINECTL_ENDPOINT"
MAX_MESSAGE_BYTES = 16 << 20


def default_endpoint() -> str:
    return os.environ.get(ENDPOINT_ENV) or DEFAULT_LISTEN


def socket_path(endpoint: str) -> Path:
    if not endpoint.startswith("unix://") or len(endpoint) == len("unix://"):
        raise CtlError(f"--endpoint must be unix:///path/to/engine.sock, not {endpoint!r}")
    return Path(endpoint[len("unix://"):])


class Conn:
    """Stubs over one channel; `call` turns gRPC failures into CtlError."""

    def __init__(self, endpoint: str, *, timeout_s: float = 60.0) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        path = socket_path(endpoint)
        if not path.exists():
            raise not_running(endpoint, f"no socket at {path}")
        self._channel = grpc.insecure_channel(
            endpoint, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                               ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
        # generated stubs are untyped: their methods are Any, checked by the tests
        self.runtime = runtime_pb2_grpc.RuntimeServiceStub(  # type: ignore[no-untyped-call]
            self._channel)
        self.images = runtime_pb2_grpc.ImageServiceStub(  # type: ignore[no-untyped-call]
            self._channel)
        self.engine = engine_pb2_grpc.EngineServiceStub(  # type: ignore[no-untyped-call]
            self._channel)

    def close(self) -> None:
        self._channel.close()

    def call(self, method: Callable[..., T], request: Any, *,
             timeout_s: float | None = None, deadline: bool = True) -> T:
        """A unary call (deadline `timeout_s`, the connection's by default, none when not
        `deadline`); the method's name for messages is taken from the stub attribute."""
        name = _name_of(method, self)
        try:
            return method(request, timeout=(timeout_s or self.timeout_s) if deadline else None)
        except grpc.RpcError as exc:
            raise from_rpc(exc, endpoint=self.endpoint, method=name) from None

    def stream(self, method: Callable[..., Iterator[T]], request: Any) -> Iterator[T]:
        """A server stream without deadline; failures become CtlError while iterating."""
        name = _name_of(method, self)
        try:
            yield from method(request)
        except grpc.RpcError as exc:
            raise from_rpc(exc, endpoint=self.endpoint, method=name) from None


def _name_of(method: object, conn: Conn) -> str:
    for stub in (conn.runtime, conn.images, conn.engine):
        for name, value in vars(stub).items():
            if value is method:
                return name
    return ""
