"""The CRI gRPC server on its unix socket.

Two servers can serve it (`engined --grpc-server`), running the same handlers:

- `kpy` (the default): our own HTTP/2 + gRPC server, cri.h2. One event-loop thread; the
  hot reads in INLINE_METHODS (answered from the engine's in-memory index, never
  blocking) run on that thread, every other RPC on a bounded worker pool. grpcio's Python
  server spends ~350 us of CPU per unary RPC on this 2-core box, our handlers 9-25 us; on
  the loop a hot read costs a small multiple of its handler (see docs/benchmarks.md).
- `grpcio`: grpcio's synchronous thread-pool `grpc.server` (grpc.aio measured slower still,
  ~500 us per RPC), kept selectable.

In both, long-lived streams (GetContainerEvents) hold one worker each and
`max_concurrent_rpcs` bounds the calls waiting for or holding a worker, so a flood gets
RESOURCE_EXHAUSTED instead of unbounded memory.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from cri.h2.server import Server as H2Server
from cri.server import assemble, listener
from cri.server.ports import Ports
from engine.errors import Unavailable

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 << 20  # what crictl and the kubelet allow themselves
GRPC_SERVERS = ("kpy", "grpcio")
DEFAULT_GRPC_SERVER = "kpy"

_RUNTIME = "/runtime.v1.RuntimeService/"
# Reads answered from the engine's in-memory index (cri.server.container_view, the
# runtime's sandbox index, fixed facts): no subprocess, no lock held across I/O, no wait,
# so they run on the event loop itself.
INLINE_METHODS = frozenset(_RUNTIME + name for name in (
    "Version", "ListContainers", "ContainerStatus", "ListPodSandbox", "PodSandboxStatus"))


class CriServer:
    def __init__(self, *, listen: str, ports: Ports, max_workers: int = 32,
                 extra_handlers: Sequence[grpc.GenericRpcHandler[Any, Any]] = (),
                 max_concurrent_rpcs: int = 1024,
                 clock_ns: Callable[[], int] = time.time_ns,
                 events_poll_s: float = 0.5,
                 grpc_server: str = DEFAULT_GRPC_SERVER) -> None:
        if grpc_server not in GRPC_SERVERS:
            raise ValueError(f"grpc_server must be one of {', '.join(GRPC_SERVERS)}")
        self.path: Path = listener.socket_path(listen)
        self.grpc_server = grpc_server
        self._ports = ports
        self._extra = tuple(extra_handlers)  # e.g. enginectl's kubeletpy.engine.v1
        self._max_workers = max_workers
        self._max_concurrent = max_concurrent_rpcs
        self._clock_ns = clock_ns
        self._events_poll_s = events_poll_s
        self._server: grpc.Server | None = None
        self._h2: H2Server | None = None
        self._inode: int | None = None

    @property
    def endpoint(self) -> str:
        return f"unix://{self.path}"

    def _handlers(self) -> list[grpc.GenericRpcHandler[Any, Any]]:
        return [*assemble.handlers(self._ports, clock_ns=self._clock_ns,
                                   events_poll_s=self._events_poll_s), *self._extra]

    def start(self) -> None:
        listener.prepare(self.path)
        if self.grpc_server == "kpy":
            self._start_kpy()
        else:
            self._start_grpcio()
        listener.secure(self.path)
        self._inode = self.path.stat().st_ino
        log.info("serving the CRI on %s (%s)", self.endpoint, self.grpc_server)

    def _start_kpy(self) -> None:
        server = H2Server(self._handlers(), inline=INLINE_METHODS,
                          max_workers=self._max_workers,
                          max_concurrent_rpcs=self._max_concurrent,
                          max_message_bytes=MAX_MESSAGE_BYTES)
        previous = os.umask(0o117)  # the socket is born 0660, never briefly wider
        try:
            server.bind(self.path)
        except OSError as exc:
            raise Unavailable(f"cannot listen on {self.path}: {exc.strerror}") from exc
        finally:
            os.umask(previous)
        server.start()
        self._h2 = server

    def _start_grpcio(self) -> None:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers,
                                       thread_name_prefix="cri-rpc"),
            handlers=self._handlers(),
            maximum_concurrent_rpcs=self._max_concurrent,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
        previous = os.umask(0o117)  # the socket is born 0660, never briefly wider
        try:
            bound = server.add_insecure_port(self.endpoint)
        except RuntimeError as exc:
            raise Unavailable(f"cannot listen on {self.path}: {exc}") from exc
        finally:
            os.umask(previous)
        if not bound:
            raise Unavailable(f"cannot listen on {self.path}")
        server.start()
        self._server = server

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the server stops (True) or `timeout_s` passes (False)."""
        if self._h2 is not None:
            return self._h2.wait(timeout_s)
        if self._server is None:
            return True
        return bool(self._server.wait_for_termination(timeout_s))

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let running RPCs finish for `grace_s`, remove our socket."""
        server, self._server = self._server, None
        h2, self._h2 = self._h2, None
        if server is None and h2 is None:
            return
        if server is not None:
            server.stop(grace_s).wait()
        if h2 is not None:
            h2.stop(grace_s)
        try:
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass
        log.info("stopped serving %s", self.endpoint)
