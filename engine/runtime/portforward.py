"""Port-forward: a TCP connection to 127.0.0.1:port inside a sandbox's network namespace."""
from __future__ import annotations

import os
import socket
import threading

from engine.errors import DeadlineExceeded, InvalidArgument, Unavailable
from engine.runtime.context import Ctx
from engine.sys import linux


def port_forward(ctx: Ctx, sid: str, port: int, *, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:port inside the sandbox's network namespace.

    A dedicated thread enters the netns (namespaces are per thread), connects and ends; the
    socket stays in the namespace it was created in.
    """
    if not 0 < port < 65536:
        raise InvalidArgument(f"invalid port {port}")
    sandbox = ctx.store.load_sandbox(sid)
    if sandbox.config.host_network:
        netns = "/proc/self/ns/net"
    else:
        netns = str(ctx.store.sandbox_dir(sid) / "ns" / "net")
    result: list[socket.socket | BaseException] = []

    def connect() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                linux.setns(fd, linux.CLONE_NEWNET)
            finally:
                os.close(fd)
            result.append(socket.create_connection(("127.0.0.1", port), timeout=timeout))
        except BaseException as e:
            result.append(e)

    t = threading.Thread(target=connect, name=f"portforward-{sid[:12]}", daemon=True)
    t.start()
    t.join(timeout + 1)
    if not result:
        raise DeadlineExceeded(f"port-forward to {port} timed out")
    if isinstance(result[0], BaseException):
        raise Unavailable(f"port-forward to 127.0.0.1:{port} in sandbox {sid}: {result[0]}")
    result[0].settimeout(None)
    return result[0]
