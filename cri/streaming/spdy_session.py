"""Exec, attach and port-forward over an upgraded SPDY/3.1 connection (client-go style).

The client opens every stream; the server answers each SYN_STREAM with a SYN_REPLY (the
client waits for it), then data flows in data frames, and each side ends its half of a
stream with the FIN flag.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from cri.streaming import exitstatus, spdy
from cri.streaming.session import PortConnection, SessionIO, parse_resize
from engine.errors import EngineError, InvalidArgument

log = logging.getLogger(__name__)

READ_CHUNK = 64 << 10
STREAM_SETUP_TIMEOUT_S = 30.0


class ByteSink(Protocol):
    """The half of asyncio.StreamWriter SPDY needs (also met by a WebSocket tunnel)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class SpdyConn:
    def __init__(self, reader: asyncio.StreamReader, writer: ByteSink) -> None:
        self._reader, self._writer = reader, writer
        self._frames = spdy.FrameReader()
        self._z = spdy.HeaderCompressor()
        self._lock = asyncio.Lock()

    async def _send(self, data: bytes) -> None:
        async with self._lock:
            self._writer.write(data)
            await self._writer.drain()

    async def reply(self, stream_id: int) -> None:
        async with self._lock:  # the compressor's state must follow the write order
            self._writer.write(spdy.encode_syn_reply(self._z, stream_id, {}))
            await self._writer.drain()

    async def data(self, stream_id: int, data: bytes, *, fin: bool = False) -> None:
        for i in range(0, max(len(data), 1), READ_CHUNK):
            chunk = data[i:i + READ_CHUNK]
            await self._send(spdy.encode_data(stream_id, chunk,
                                              fin=fin and i + READ_CHUNK >= len(data)))

    async def reset(self, stream_id: int, status: int) -> None:
        await self._send(spdy.encode_rst_stream(stream_id, status))

    async def goaway(self, last_stream_id: int) -> None:
        with contextlib.suppress(ConnectionError):
            await self._send(spdy.encode_goaway(last_stream_id))

    async def frames(self) -> list[spdy.Frame]:
        """The next frames; [] at EOF. Pings are answered here."""
        while True:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                return []
            frames = []
            for frame in self._frames.feed(data):
                if isinstance(frame, spdy.ControlFrame) and frame.type == spdy.PING:
                    await self._send(spdy.encode_ping(frame.value))
                else:
                    frames.append(frame)
            if frames:
                return frames


async def remote_command(conn: SpdyConn, *, stdin: bool, stdout: bool, stderr: bool,
                         tty: bool, run: Callable[[SessionIO], Awaitable[int]]) -> None:
    expected = {"error"} | {name for name, on in (("stdin", stdin), ("stdout", stdout),
                                                  ("stderr", stderr), ("resize", tty)) if on}
    streams: dict[str, int] = {}
    kinds: dict[int, str] = {}
    ready = asyncio.Event()
    gone = asyncio.Event()

    def writer(kind: str) -> Callable[[bytes], Awaitable[None]]:
        return lambda data: conn.data(streams[kind], data)

    io = SessionIO(stdout=writer("stdout") if stdout else None,
                   stderr=writer("stderr") if stderr else None, stdin=stdin, tty=tty)

    async def pump_in() -> None:
        try:
            while frames := await conn.frames():
                for frame in frames:
                    await _dispatch(frame)
        except InvalidArgument as exc:
            log.info("closing a SPDY stream connection: %s", exc)
        finally:
            io.close()
            gone.set()

    async def _dispatch(frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.ControlFrame):
            if frame.type == spdy.SYN_STREAM:
                kind = frame.headers.get("streamtype", [""])[0]
                if kind not in expected or kind in streams:
                    await conn.reset(frame.stream_id, spdy.REFUSED_STREAM)
                    return
                await conn.reply(frame.stream_id)
                streams[kind], kinds[frame.stream_id] = frame.stream_id, kind
                if expected <= set(streams):
                    ready.set()
            elif frame.type == spdy.RST_STREAM and kinds.get(frame.stream_id) == "stdin":
                io.close_stdin()
            elif frame.type == spdy.GOAWAY:
                io.close()
            return
        stream_kind = kinds.get(frame.stream_id)
        if stream_kind == "stdin":
            io.feed_stdin(frame.data)
            if frame.fin:
                io.close_stdin()
        elif stream_kind == "resize" and frame.data:
            for line in frame.data.splitlines():
                if line.strip():
                    io.feed_resize(parse_resize(line))

    reading = asyncio.create_task(pump_in())
    try:
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({waiter, asyncio.create_task(gone.wait())},
                           timeout=STREAM_SETUP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            log.info("SPDY client did not open its streams %s", sorted(expected - set(streams)))
            return
        try:
            status = exitstatus.exit_code(await run(io))
        except EngineError as exc:
            status = exitstatus.failure(str(exc))
        for kind in ("stdout", "stderr"):
            if kind in streams:
                await conn.data(streams[kind], b"", fin=True)
        await conn.data(streams["error"], status, fin=True)
        await conn.goaway(max(streams.values()))
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading


async def port_forward(conn: SpdyConn, allowed: set[int],
                       connect: Callable[[int], Awaitable[PortConnection]]) -> None:
    """Streams come in pairs per request ID: "error" then "data", each with a `port`."""
    errors: dict[str, int] = {}
    data_streams: dict[int, PortConnection] = {}
    pumps: set[asyncio.Task[None]] = set()

    async def pump_out(stream_id: int, upstream: PortConnection) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await upstream.read(READ_CHUNK):
                await conn.data(stream_id, chunk)
            await conn.data(stream_id, b"", fin=True)

    async def open_stream(frame: spdy.ControlFrame) -> None:
        kind = frame.headers.get("streamtype", [""])[0]
        request_id = frame.headers.get("requestid", [""])[0]
        try:
            port = int(frame.headers.get("port", [""])[0])
        except ValueError:
            await conn.reset(frame.stream_id, spdy.PROTOCOL_ERROR)
            return
        await conn.reply(frame.stream_id)
        if kind == "error":
            errors[request_id] = frame.stream_id
            return
        if kind != "data":
            await conn.reset(frame.stream_id, spdy.REFUSED_STREAM)
            return
        try:
            if allowed and port not in allowed:
                raise InvalidArgument(f"port {port} was not requested in PortForward")
            upstream = await connect(port)
        except EngineError as exc:
            if request_id in errors:
                await conn.data(errors[request_id], str(exc).encode(), fin=True)
            await conn.data(frame.stream_id, b"", fin=True)
            return
        data_streams[frame.stream_id] = upstream
        task = asyncio.create_task(pump_out(frame.stream_id, upstream))
        pumps.add(task)
        task.add_done_callback(pumps.discard)

    try:
        while frames := await conn.frames():
            for frame in frames:
                if isinstance(frame, spdy.ControlFrame):
                    if frame.type == spdy.SYN_STREAM:
                        await open_stream(frame)
                    elif frame.type == spdy.GOAWAY:
                        return
                    continue
                upstream = data_streams.get(frame.stream_id)
                if upstream is not None and frame.data:
                    await upstream.write(frame.data)
    except InvalidArgument as exc:
        log.info("closing a SPDY port-forward connection: %s", exc)
    finally:
        for task in list(pumps):
            task.cancel()
        for upstream in data_streams.values():
            await upstream.close()
