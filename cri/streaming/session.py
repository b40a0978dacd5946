"""What a streaming session hands the runtime, independent of the wire protocol.

The runtime (the engine's exec/attach/port-forward, behind `StreamRuntime`) sees a
`SessionIO`: stdin chunks until EOF, stdout/stderr writers and terminal resizes. The WebSocket
and SPDY transports fill and drain it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Protocol

from cri.api import runtime_pb2 as pb
from engine.errors import InvalidArgument


@dataclasses.dataclass(frozen=True)
class TermSize:
    width: int
    height: int


def parse_resize(data: bytes) -> TermSize:
    """A resize message: `{"Width": 80, "Height": 24}`."""
    try:
        obj = json.loads(data)
        width, height = int(obj["Width"]), int(obj["Height"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(f"bad terminal resize message {data[:100]!r}") from exc
    if not (0 <= width < 1 << 16 and 0 <= height < 1 << 16):
        raise InvalidArgument(f"terminal size {width}x{height} out of range")
    return TermSize(width, height)


Writer = Callable[[bytes], Awaitable[None]]


class SessionIO:
    """One client's streams. Transports call `feed_*`; the runtime calls the rest."""

    def __init__(self, *, stdout: Writer | None, stderr: Writer | None,
                 stdin: bool, tty: bool) -> None:
        self._stdin: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._resizes: asyncio.Queue[TermSize | None] = asyncio.Queue()
        self._stdout, self._stderr = stdout, stderr
        self._gone = asyncio.Event()
        self.has_stdin, self.tty = stdin, tty
        if not stdin:
            self._stdin.put_nowait(None)
        if not tty:
            self._resizes.put_nowait(None)

    # transport side
    def feed_stdin(self, data: bytes) -> None:
        if data:
            self._stdin.put_nowait(data)

    def close_stdin(self) -> None:
        self._stdin.put_nowait(None)

    def feed_resize(self, size: TermSize) -> None:
        self._resizes.put_nowait(size)

    def close(self) -> None:
        """The client went away: stdin ends and no more resizes come."""
        self._stdin.put_nowait(None)
        self._resizes.put_nowait(None)
        self._gone.set()

    # runtime side
    async def wait_gone(self) -> None:
        """Returns once the client has disconnected."""
        await self._gone.wait()

    async def read_stdin(self) -> bytes | None:
        """The next stdin chunk; None at end of input (or when stdin was not asked for)."""
        data = await self._stdin.get()
        if data is None:
            self._stdin.put_nowait(None)  # stays at EOF
        return data

    async def next_resize(self) -> TermSize | None:
        size = await self._resizes.get()
        if size is None:
            self._resizes.put_nowait(None)
        return size

    async def write_stdout(self, data: bytes) -> None:
        if self._stdout is not None and data:
            await self._stdout(data)

    async def write_stderr(self, data: bytes) -> None:
        if self._stderr is not None and data:
            await self._stderr(data)


class PortConnection(Protocol):
    async def read(self, n: int) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class StreamRuntime(Protocol):
    """The engine side of streaming; each method raises only engine.errors classes."""

    def check_container(self, container_id: str) -> None:
        """NotFound, or FailedPrecondition when it is not running."""
        ...

    def check_attach(self, container_id: str) -> None:
        """As check_container, and Unimplemented when attaching is not supported."""
        ...

    def check_sandbox(self, sandbox_id: str) -> None: ...

    async def exec(self, request: pb.ExecRequest, io: SessionIO) -> int:
        """Run the command with the session's streams; its exit code."""
        ...

    async def attach(self, request: pb.AttachRequest, io: SessionIO) -> int:
        """Attach until the container exits (its exit code) or the client leaves."""
        ...

    async def connect(self, sandbox_id: str, port: int) -> PortConnection:
        """A TCP connection to `port` inside the sandbox's network namespace."""
        ...
