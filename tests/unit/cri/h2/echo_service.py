"""A small gRPC service for the conformance suite: the behaviours the CRI relies on,
served by either server (cri.h2 or grpcio) from the same GenericRpcHandler."""
from __future__ import annotations

import dataclasses
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, Protocol

import grpc

from cri.h2 import frames
from cri.h2.guard import DEFAULT_LIMITS, Limits
from cri.h2.server import Server

SERVICE = "test.v1.Echo"
KINDS = ["kpy", "grpcio"]  # the servers the conformance suites run against
MAX_MESSAGE = 16 << 20


@dataclasses.dataclass
class Seen:
    """What the handlers observed, for the tests to check."""

    ended: threading.Event = dataclasses.field(default_factory=threading.Event)
    stream_stopped: threading.Event = dataclasses.field(default_factory=threading.Event)
    metadata: dict[str, str | bytes] = dataclasses.field(default_factory=dict)
    remaining: list[float | None] = dataclasses.field(default_factory=list)
    peer: str = ""
    yielded: int = 0  # messages Count produced


class Echo:
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        verb, _, arg = request.partition(b":")
        if verb == b"echo":
            self.seen.metadata = dict(context.invocation_metadata())
            self.seen.peer = context.peer()
            self.seen.remaining.append(context.time_remaining())
            return arg
        if verb == b"abort":
            code, _, message = arg.partition(b":")
            context.abort(grpc.StatusCode[code.decode()], message.decode())
        if verb == b"set":  # set_code + set_details, then return normally
            context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
            context.set_details(arg.decode())
            return b""
        if verb == b"raise":
            raise RuntimeError(arg.decode())
        if verb == b"sleep":
            context.add_callback(self.seen.ended.set)
            deadline = time.monotonic() + float(arg)
            while context.is_active() and time.monotonic() < deadline:
                time.sleep(0.01)
            return b"slept"
        if verb == b"big":
            return b"x" * int(arg)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown verb {verb!r}")

    def count(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Server streaming: N numbered messages, or (N = 0) until the client goes."""
        context.add_callback(self.seen.ended.set)
        n = int(request)
        i = 0
        try:
            while context.is_active() and (n == 0 or i < n):
                yield str(i).encode()
                i += 1
                self.seen.yielded += 1
                if n == 0:
                    time.sleep(0.005)
        finally:
            self.seen.stream_stopped.set()

    def total(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        return str(sum(len(r) for r in requests)).encode()

    def chat(self, requests: Iterator[bytes],
             context: grpc.ServicerContext) -> Iterator[bytes]:
        for r in requests:
            yield r.upper()


def handler(seen: Seen) -> grpc.GenericRpcHandler[Any, Any]:
    echo = Echo(seen)
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(echo.unary),
        "Inline": grpc.unary_unary_rpc_method_handler(echo.unary),
        "Count": grpc.unary_stream_rpc_method_handler(echo.count),
        "Total": grpc.stream_unary_rpc_method_handler(echo.total),
        "Chat": grpc.stream_stream_rpc_method_handler(echo.chat),
    })


class Running(Protocol):
    def stop(self) -> None: ...


@dataclasses.dataclass
class Served:
    kind: str
    path: Path
    seen: Seen
    running: Running

    @property
    def endpoint(self) -> str:
        return f"unix://{self.path}"

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.endpoint, options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20)])

    def call(self, channel: grpc.Channel, method: str) -> Any:
        return channel.unary_unary(f"/{SERVICE}/{method}")

    def stop(self) -> None:
        self.running.stop()


class _Grpcio:
    def __init__(self, server: grpc.Server) -> None:
        self.server = server

    def stop(self) -> None:
        self.server.stop(0.5).wait()


class _Kpy:
    def __init__(self, server: Server) -> None:
        self.server = server

    def stop(self) -> None:
        self.server.stop(0.5)


def serve(kind: str, *, max_concurrent: int = 1024,
          handlers: Iterable[grpc.GenericRpcHandler[Any, Any]] = (),
          limits: Limits = DEFAULT_LIMITS) -> Served:
    """A server of `kind` on a fresh socket (`limits` are ours only)."""
    seen = Seen()
    all_handlers = [handler(seen), *handlers]
    path = Path(tempfile.mkdtemp(prefix="h2c-", dir="/tmp")) / "s.sock"
    running: Running
    if kind == "kpy":
        server = Server(all_handlers, inline={f"/{SERVICE}/Inline"}, max_workers=8,
                        max_concurrent_rpcs=max_concurrent, max_message_bytes=MAX_MESSAGE,
                        limits=limits)
        server.bind(path)
        server.start()
        running = _Kpy(server)
    else:
        gserver = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                              handlers=all_handlers, maximum_concurrent_rpcs=max_concurrent,
                              options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                       ("grpc.max_send_message_length", MAX_MESSAGE)])
        gserver.add_insecure_port(f"unix://{path}")
        gserver.start()
        running = _Grpcio(gserver)
    return Served(kind, path, seen, running)


# -- raw HTTP/2 on the socket ---------------------------------------------------------------

def raw_socket(served: Served) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(served.path))
    return sock


def frames_until(sock: socket.socket, ftype: int,
                 flags: int = 0) -> list[tuple[int, int, int, bytes]]:
    """Frames read until one of `ftype` carrying all of `flags` (or the connection closes)."""
    buf = b""
    seen: list[tuple[int, int, int, bytes]] = []
    while True:
        while len(buf) >= 9:
            length, t, f, sid = frames.parse_header(buf, 0)
            if len(buf) < 9 + length:
                break
            seen.append((t, f, sid, buf[9:9 + length]))
            buf = buf[9 + length:]
            if t == ftype and f & flags == flags:
                return seen
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return seen
        if not data:
            return seen
        buf += data
