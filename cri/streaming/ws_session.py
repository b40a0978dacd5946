"""Exec, attach and port-forward over an upgraded WebSocket connection."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

from cri.streaming import exitstatus
from cri.streaming import websocket as ws
from cri.streaming.session import PortConnection, SessionIO, parse_resize
from engine.errors import EngineError, InvalidArgument

log = logging.getLogger(__name__)

READ_CHUNK = 64 << 10


class WsConn:
    """Serialized frame writes and reassembled incoming messages of one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._frames = ws.FrameReader(require_mask=True)
        self._lock = asyncio.Lock()
        self.closed = False

    async def send(self, frame: ws.Frame) -> None:
        async with self._lock:
            if self.closed:
                return
            self._writer.write(ws.encode(frame))
            await self._writer.drain()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(ConnectionError):
            await self.send(ws.close_frame(code, reason))
        self.closed = True

    async def messages(self) -> AsyncIterator[ws.Frame]:
        """Complete data messages; answers pings; ends at a close frame or EOF."""
        parts: list[ws.Frame] = []
        while data := await self._reader.read(READ_CHUNK):
            for frame in self._frames.feed(data):
                if frame.opcode == ws.OP_CLOSE:
                    return
                if frame.opcode == ws.OP_PING:
                    await self.send(ws.Frame(ws.OP_PONG, frame.payload))
                    continue
                if frame.opcode == ws.OP_PONG:
                    continue
                if frame.opcode == ws.OP_CONTINUATION and not parts:
                    raise InvalidArgument("WebSocket continuation without a first fragment")
                parts.append(frame)
                if frame.fin:
                    yield ws.Frame(parts[0].opcode, b"".join(p.payload for p in parts))
                    parts = []


class Tunnel:
    """A byte stream carried in WebSocket binary messages (SPDY over WebSocket: the
    `SPDY/3.1+portforward.k8s.io` subprotocol). Message boundaries carry no meaning."""

    def __init__(self, conn: WsConn) -> None:
        self._conn = conn
        self.reader = asyncio.StreamReader()
        self._pending = bytearray()
        self._pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self._conn.messages():
                self.reader.feed_data(message.payload)
        except (InvalidArgument, ConnectionError) as exc:
            log.info("WebSocket tunnel closed: %s", exc)
        finally:
            self.reader.feed_eof()

    def write(self, data: bytes) -> None:
        self._pending += data

    async def drain(self) -> None:
        if self._pending:
            data, self._pending = bytes(self._pending), bytearray()
            await self._conn.send(ws.Frame(ws.OP_BINARY, data))

    async def close(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        await self._conn.close()


async def remote_command(conn: WsConn, codec: ws.ChannelCodec, *, stdin: bool, stdout: bool,
                         stderr: bool, tty: bool,
                         run: Callable[[SessionIO], Awaitable[int]]) -> None:
    """Run an exec or attach session; report its exit status on the error channel."""
    def writer(channel: int) -> Callable[[bytes], Awaitable[None]]:
        return lambda data: conn.send(codec.message(channel, data))

    io = SessionIO(stdout=writer(ws.STDOUT) if stdout else None,
                   stderr=writer(ws.STDERR) if stderr else None, stdin=stdin, tty=tty)

    async def pump_in() -> None:
        try:
            async for message in conn.messages():
                channel, data = codec.parse(message)
                if channel == ws.STDIN:
                    io.feed_stdin(data)
                elif channel == ws.RESIZE:
                    io.feed_resize(parse_resize(data))
                elif channel == ws.CLOSE_CHANNEL and data[:1] == bytes([ws.STDIN]):
                    io.close_stdin()
        except InvalidArgument as exc:
            log.info("closing a WebSocket stream: %s", exc)
            await conn.close(1002, str(exc))
        finally:
            io.close()

    reading = asyncio.create_task(pump_in())
    try:
        status = exitstatus.exit_code(await run(io))
    except EngineError as exc:
        status = exitstatus.failure(str(exc))
    await conn.send(codec.message(ws.ERROR, status))
    await conn.close()
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reading


async def port_forward(conn: WsConn, codec: ws.ChannelCodec, ports: list[int],
                       connect: Callable[[int], Awaitable[PortConnection]]) -> None:
    """Channel 2i carries port i's bytes both ways, 2i+1 its errors; each opens with the port
    number (uint16, little-endian)."""
    for i, port in enumerate(ports):
        for channel in (2 * i, 2 * i + 1):
            await conn.send(codec.message(channel, struct.pack("<H", port)))
    conns: dict[int, PortConnection] = {}
    pumps: list[asyncio.Task[None]] = []

    async def pump_out(i: int, upstream: PortConnection) -> None:
        while data := await upstream.read(READ_CHUNK):
            await conn.send(codec.message(2 * i, data))

    async def open_port(i: int) -> PortConnection | None:
        if i not in conns:
            try:
                conns[i] = await connect(ports[i])
            except EngineError as exc:
                await conn.send(codec.message(2 * i + 1, str(exc).encode()))
                return None
            pumps.append(asyncio.create_task(pump_out(i, conns[i])))
        return conns[i]

    try:
        for i in range(len(ports)):  # dial at once: some protocols speak first
            await open_port(i)
        async for message in conn.messages():
            channel, data = codec.parse(message)
            index = channel // 2
            if channel % 2 or index >= len(ports):
                continue  # clients send nothing meaningful on error channels
            upstream = await open_port(index)
            if upstream is not None and data:
                await upstream.write(data)
    except InvalidArgument as exc:
        await conn.close(1002, str(exc))
    finally:
        for task in pumps:
            task.cancel()
        for upstream in conns.values():
            await upstream.close()
        await conn.close()
