"""One gRPC channel to a CRI endpoint, with per-call timeouts and error mapping."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio

from cri.api import runtime_pb2_grpc
from kubelet_py.cri_client.timing import CallStats
from kubelet_py.errors import RuntimeUnavailable

T = TypeVar("T")

MAX_MESSAGE = 16 * 1024 * 1024


class CRIError(RuntimeUnavailable):
    """A CRI call failed; `code` is the gRPC status code the runtime returned."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"CRI {method}: {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details

    @property
    def not_found(self) -> bool:
        return self.code == grpc.StatusCode.NOT_FOUND

    @property
    def unavailable(self) -> bool:
        return self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def grpc_target(endpoint: str) -> str:
    """`unix:///run/x.sock` or a bare socket path -> a gRPC target."""
    if endpoint.startswith("unix://"):
        return "unix:" + endpoint[len("unix://"):]
    if endpoint.startswith("/"):
        return "unix:" + endpoint
    if endpoint.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return endpoint
    raise RuntimeUnavailable(f"unsupported CRI endpoint {endpoint!r}: expected unix:///path")


@dataclasses.dataclass
class Connection:
    channel: grpc.aio.Channel
    image_channel: grpc.aio.Channel
    runtime: Any
    image: Any
    timeout: float
    stats: CallStats = dataclasses.field(default_factory=CallStats)

    async def call(self, method: str, rpc: Callable[..., Awaitable[T]], request: Any, *,
                   timeout: float | None = None) -> T:
        started = time.monotonic()
        try:
            result = await rpc(request, timeout=timeout or self.timeout)
        except grpc.aio.AioRpcError as exc:
            self.stats.observe(method, time.monotonic() - started, error=True)
            raise CRIError(method, exc.code(), exc.details() or "") from exc
        self.stats.observe(method, time.monotonic() - started, error=False)
        return result

    async def close(self) -> None:
        await self.channel.close(None)
        if self.image_channel is not self.channel:
            await self.image_channel.close(None)


def connect(endpoint: str, *, image_endpoint: str | None = None,
            timeout: float = 120.0) -> Connection:
    options = [("grpc.max_receive_message_length", MAX_MESSAGE),
               ("grpc.max_send_message_length", MAX_MESSAGE)]
    channel = grpc.aio.insecure_channel(grpc_target(endpoint), options=options)
    image_channel = channel if image_endpoint in (None, endpoint) else \
        grpc.aio.insecure_channel(grpc_target(image_endpoint or endpoint), options=options)
    return Connection(channel=channel, image_channel=image_channel,
                      runtime=runtime_pb2_grpc.RuntimeServiceStub(  # type: ignore[no-untyped-call]
                          channel),
                      image=runtime_pb2_grpc.ImageServiceStub(  # type: ignore[no-untyped-call]
                          image_channel),
                      timeout=timeout)
