"""StreamRuntime over the engine's Runtime: streaming exec and port-forward.

The engine hands back file descriptors (pipes or a pty) and sockets; this module pumps them
to and from the streaming session on the streaming server's event loop, doing the blocking
reads and writes in executor threads.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable

from cri.api import runtime_pb2 as pb
from cri.errors import Unimplemented
from cri.streaming.session import SessionIO
from engine.errors import FailedPrecondition
from engine.runtime.api import Runtime
from engine.runtime.exec import ExecSession
from engine.runtime.status import SandboxStatus, Status

CHUNK = 32 << 10
DRAIN_AFTER_EXIT_S = 2.0  # output still buffered when the process exits


async def _read(fd: int) -> bytes:
    try:
        return await asyncio.to_thread(os.read, fd, CHUNK)
    except OSError:  # EIO from a pty master once the terminal's last holder exits
        return b""


async def _pump_out(fd: int, write: Callable[[bytes], Awaitable[None]]) -> None:
    while data := await _read(fd):
        await write(data)


async def _pump_in(io: SessionIO, session: ExecSession) -> None:
    while (data := await io.read_stdin()) is not None:
        await asyncio.to_thread(os.write, session.stdin, data)
    if not session.tty:
        with contextlib.suppress(OSError):
            os.close(session.stdin)
        session.stdin = -1


async def _resize(io: SessionIO, session: ExecSession) -> None:
    while (size := await io.next_resize()) is not None:
        with contextlib.suppress(FailedPrecondition, OSError):
            session.resize(size.width, size.height)


class SocketConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def read(self, n: int) -> bytes:
        return await self._reader.read(n)

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


class EngineStreams:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    def check_container(self, container_id: str) -> None:
        state = self._rt.container_status(container_id).state
        if state.status is not Status.RUNNING:
            raise FailedPrecondition(f"container {container_id} is {state.status.value}, "
                                     "not running")

    def check_attach(self, container_id: str) -> None:
        self.check_container(container_id)
        raise Unimplemented("attach is not supported by the engine yet")

    def check_sandbox(self, sandbox_id: str) -> None:
        if self._rt.sandbox_status(sandbox_id).status is not SandboxStatus.READY:
            raise FailedPrecondition(f"sandbox {sandbox_id} is not ready")

    async def exec(self, request: pb.ExecRequest, io: SessionIO) -> int:
        session = await asyncio.to_thread(self._rt.exec_stream, request.container_id,
                                          tuple(request.cmd), tty=request.tty)
        pumps = [asyncio.create_task(_pump_out(session.stdout, io.write_stdout))]
        if session.stderr >= 0:
            pumps.append(asyncio.create_task(_pump_out(session.stderr, io.write_stderr)))
        feeders = [asyncio.create_task(_pump_in(io, session)),
                   asyncio.create_task(_resize(io, session))]
        try:
            code = await asyncio.to_thread(session.wait)
            await asyncio.wait(pumps, timeout=DRAIN_AFTER_EXIT_S)
            return code
        finally:
            for task in (*pumps, *feeders):
                task.cancel()
            session.close()

    async def attach(self, request: pb.AttachRequest, io: SessionIO) -> int:
        raise Unimplemented("attach is not supported by the engine yet")

    async def connect(self, sandbox_id: str, port: int) -> SocketConnection:
        sock: socket.socket = await asyncio.to_thread(self._rt.port_forward, sandbox_id, port)
        reader, writer = await asyncio.open_connection(sock=sock)
        return SocketConnection(reader, writer)
