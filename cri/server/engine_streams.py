"""StreamRuntime over the engine's Runtime: streaming exec, attach and port-forward.

The engine hands back file descriptors (pipes or a pty) and sockets; this module pumps them
to and from the streaming session on the streaming server's event loop, doing the blocking
reads and writes in executor threads.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable

from cri.api import runtime_pb2 as pb
from cri.streaming.session import SessionIO
from engine.errors import FailedPrecondition, Unavailable
from engine.runtime.api import Runtime
from engine.runtime.attach import AttachSession
from engine.runtime.exec import ExecSession
from engine.runtime.status import SandboxStatus, Status

log = logging.getLogger(__name__)

CHUNK = 32 << 10
DRAIN_AFTER_EXIT_S = 2.0  # output still buffered when the process exits
EXIT_AFTER_EOF_S = 10.0  # an attached container's output ended: it is exiting


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
    if session.tty:
        if io.has_stdin:  # end of input on a terminal is ^D, as a user would type it
            with contextlib.suppress(OSError):
                os.write(session.stdin, b"\x04")
        return
    with contextlib.suppress(OSError):
        os.close(session.stdin)
    session.stdin = -1


async def _resize(io: SessionIO, session: ExecSession) -> None:
    while (size := await io.next_resize()) is not None:
        with contextlib.suppress(FailedPrecondition, OSError):
            session.resize(size.width, size.height)


async def _pump_attach_out(session: AttachSession, io: SessionIO) -> None:
    while (chunk := await asyncio.to_thread(session.read)) is not None:
        stream, data = chunk
        await (io.write_stderr if stream == "stderr" else io.write_stdout)(data)


async def _pump_attach_in(io: SessionIO, session: AttachSession, *, stdin_once: bool) -> None:
    if not (io.has_stdin and session.stdin):
        return
    try:
        while (data := await io.read_stdin()) is not None:
            await asyncio.to_thread(session.write_stdin, data)
        if stdin_once:  # the client's input ended: so does the container's (kubectl attach)
            await asyncio.to_thread(session.close_stdin)
    except Unavailable:  # the container exited: its output pump ends the session
        pass


async def _attach_resize(io: SessionIO, session: AttachSession) -> None:
    while (size := await io.next_resize()) is not None:
        with contextlib.suppress(FailedPrecondition, Unavailable):
            session.resize(size.width, size.height)


def _hang_up(session: AttachSession) -> None:
    """Ends the attach connection; shutdown() also wakes a thread blocked in read()."""
    with contextlib.suppress(OSError):
        session.sock.shutdown(socket.SHUT_RDWR)
    session.close()


def _descendants(pid: int) -> list[int]:
    """`pid`'s descendants, children first found, from /proc (the exec helper forks the
    command into the container's namespaces, so killing the helper alone orphans it)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(session: ExecSession) -> None:
    pid = session.process.pid
    for victim in [*_descendants(pid), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


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
        exited = asyncio.create_task(asyncio.to_thread(session.wait))
        gone = asyncio.create_task(io.wait_gone())
        try:
            await asyncio.wait({exited, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():  # the client left: the command must not outlive it
                log.info("exec client of %s left; killing the command", request.container_id)
                _kill_tree(session)
            code = await exited
            await asyncio.wait(pumps, timeout=DRAIN_AFTER_EXIT_S)
            return code
        finally:
            gone.cancel()
            for task in (*pumps, *feeders):
                task.cancel()
            session.close()

    async def attach(self, request: pb.AttachRequest, io: SessionIO) -> int:
        cid = request.container_id
        stdin_once = (await asyncio.to_thread(self._rt.container_status, cid)
                      ).record.config.stdin_once
        session = await asyncio.to_thread(self._rt.attach, cid)
        output = asyncio.create_task(_pump_attach_out(session, io))
        feeders = [asyncio.create_task(_pump_attach_in(io, session, stdin_once=stdin_once)),
                   asyncio.create_task(_attach_resize(io, session))]
        gone = asyncio.create_task(io.wait_gone())
        try:
            await asyncio.wait({output, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not output.done():  # the client left: detach, the container keeps running
                log.info("attach client of %s left; detaching", cid)
                return 0
            state = await asyncio.to_thread(self._rt.wait_container, cid,
                                            timeout=EXIT_AFTER_EOF_S)
            return state.exit_code
        finally:
            gone.cancel()
            for task in (output, *feeders):
                task.cancel()
            _hang_up(session)

    async def connect(self, sandbox_id: str, port: int) -> SocketConnection:
        sock: socket.socket = await asyncio.to_thread(self._rt.port_forward, sandbox_id, port)
        reader, writer = await asyncio.open_connection(sock=sock)
        return SocketConnection(reader, writer)
