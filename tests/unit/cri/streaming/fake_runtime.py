"""A StreamRuntime whose "containers" run a few built-in commands, for transport tests."""
from __future__ import annotations

import asyncio

from cri.api import runtime_pb2 as pb
from cri.streaming.session import SessionIO, TermSize
from engine.errors import FailedPrecondition, NotFound


class EchoConnection:
    """A "TCP service" that answers every chunk with `echo:` + chunk."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = False

    async def read(self, n: int) -> bytes:
        return await self._queue.get()

    async def write(self, data: bytes) -> None:
        self._queue.put_nowait(b"echo:" + data)

    async def close(self) -> None:
        self.closed = True
        self._queue.put_nowait(b"")


class FakeStreamRuntime:
    def __init__(self) -> None:
        self.running = {"c1"}
        self.sandboxes = {"s1"}
        self.resizes: list[TermSize] = []
        self.connections: list[EchoConnection] = []

    def check_container(self, container_id: str) -> None:
        if container_id == "stopped":
            raise FailedPrecondition("container stopped is not running")
        if container_id not in self.running:
            raise NotFound(f"container {container_id} not found")

    def check_attach(self, container_id: str) -> None:
        self.check_container(container_id)

    def check_sandbox(self, sandbox_id: str) -> None:
        if sandbox_id not in self.sandboxes:
            raise NotFound(f"sandbox {sandbox_id} not found")

    async def exec(self, request: pb.ExecRequest, io: SessionIO) -> int:
        cmd = list(request.cmd)
        if cmd[0] == "echo":
            await io.write_stdout((" ".join(cmd[1:]) + "\n").encode())
            return 0
        if cmd[0] == "warn":
            await io.write_stderr((" ".join(cmd[1:]) + "\n").encode())
            return 1
        if cmd[0] == "exit":
            return int(cmd[1])
        if cmd[0] == "cat":
            while (data := await io.read_stdin()) is not None:
                await io.write_stdout(data)
            return 0
        if cmd[0] == "size":
            size = await io.next_resize()
            if size is not None:
                self.resizes.append(size)
                await io.write_stdout(f"{size.width}x{size.height}\n".encode())
            return 0
        await io.write_stderr(f"{cmd[0]}: not found\n".encode())
        return 127

    async def attach(self, request: pb.AttachRequest, io: SessionIO) -> int:
        await io.write_stdout(b"attached\n")
        return 0

    async def connect(self, sandbox_id: str, port: int) -> EchoConnection:
        if port == 81:
            raise NotFound("nothing listens on port 81")
        conn = EchoConnection()
        self.connections.append(conn)
        return conn
