"""Proxy an upgraded client connection (SPDY/3.1 or WebSocket) to the runtime's streaming
server: replay the upgrade request there, relay its answer, then copy bytes both ways.

aiohttp parses only WebSocket upgrades itself; for any upgrade we take the connection over
by installing a payload sink (the same hook aiohttp's WebSocketResponse uses) before the
101 goes out, so every byte after it reaches the runtime untouched."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from urllib.parse import urlsplit

from aiohttp import web

from kubelet_py.errors import KubeletError

log = logging.getLogger(__name__)
HEAD_LIMIT = 64 * 1024
CHUNK = 64 * 1024
PAUSE_AT = 1024 * 1024
# Request headers the runtime needs to choose the protocol; everything else (the
# apiserver's credentials above all) stays on this hop.
FORWARD_REQUEST = ("Connection", "Upgrade", "X-Stream-Protocol-Version",
                   "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol",
                   "Sec-WebSocket-Extensions", "User-Agent", "Origin")
FORWARD_RESPONSE = ("Connection", "Upgrade", "X-Stream-Protocol-Version",
                    "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol",
                    "Sec-WebSocket-Extensions", "Content-Type")


class StreamProxyError(KubeletError):
    pass


class _Sink:
    """Receives the client's bytes once the connection is upgraded (aiohttp payload parser
    interface: feed_data/feed_eof), with read pausing past PAUSE_AT buffered bytes."""

    def __init__(self, transport: asyncio.Transport | None) -> None:
        self._transport = transport
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._buffered = 0
        self._paused = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._chunks.put_nowait(bytes(data))
        self._buffered += len(data)
        if self._buffered > PAUSE_AT and self._transport is not None and not self._paused:
            self._transport.pause_reading()
            self._paused = True
        return False, b""

    def feed_eof(self) -> None:
        self._chunks.put_nowait(None)

    async def read(self) -> bytes | None:
        chunk = await self._chunks.get()
        if chunk is not None:
            self._buffered -= len(chunk)
            if self._paused and self._buffered < PAUSE_AT // 2 and self._transport is not None:
                self._transport.resume_reading()
                self._paused = False
        return chunk


def parse_head(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    """Status code and headers of an HTTP/1.1 response head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise StreamProxyError(f"runtime streaming server answered {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise StreamProxyError(f"malformed header from the runtime: {line!r}")
        headers.append((name.strip(), value.strip()))
    return int(parts[1]), headers


def request_head(request: web.BaseRequest, *, host: str, target: str) -> bytes:
    lines = [f"{request.method} {target} HTTP/1.1", f"Host: {host}"]
    for name in FORWARD_REQUEST:
        lines.extend(f"{name}: {value}" for value in request.headers.getall(name, ()))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StreamProxyError(f"unsupported streaming URL from the runtime: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    context = None
    if parts.scheme == "https":
        # The URL came from the runtime over its local socket; its streaming server
        # serves a self-signed certificate, as the upstream kubelet expects.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context,
                                                   limit=HEAD_LIMIT)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return reader, writer, parts.netloc, target


async def proxy_upgrade(request: web.Request, url: str) -> web.StreamResponse:
    """Hand the (upgrade) request to `url` and relay the runtime's answer to the client."""
    if "upgrade" not in request.headers.get("Connection", "").lower() or \
            not request.headers.get("Upgrade"):
        raise StreamProxyError("Upgrade request required")
    reader, writer, host, target = await _open(url)
    try:
        writer.write(request_head(request, host=host, target=target))
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise StreamProxyError("runtime streaming server closed before answering") \
                from exc
        status, headers = parse_head(head)
        if status != 101:
            return await _relay_plain(reader, status, headers)
        sink = _Sink(request.transport)
        request.protocol.set_parser(sink)  # type: ignore[arg-type]
        response = web.StreamResponse(status=101, headers=[
            (k, v) for k, v in headers if k.title() in FORWARD_RESPONSE])
        response.force_close()
        await response.prepare(request)
        await _pump(sink, reader, writer, response)
        return response
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _relay_plain(reader: asyncio.StreamReader, status: int,
                       headers: list[tuple[str, str]]) -> web.Response:
    """The runtime refused the upgrade: pass its status and (bounded) body on."""
    length = next((v for k, v in headers if k.lower() == "content-length"), None)
    if length is not None and length.isdigit():
        body = await reader.readexactly(min(int(length), HEAD_LIMIT))
    else:
        body = await reader.read(HEAD_LIMIT)
    ctype = next((v for k, v in headers if k.lower() == "content-type"), "text/plain")
    return web.Response(status=status, body=body, headers={"Content-Type": ctype})


async def _pump(sink: _Sink, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                response: web.StreamResponse) -> None:
    async def upstream() -> None:
        while (chunk := await sink.read()) is not None:
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def downstream() -> None:
        while chunk := await reader.read(CHUNK):
            await response.write(chunk)

    up = asyncio.create_task(upstream())
    try:
        await downstream()
    except (ConnectionError, OSError) as exc:
        log.debug("stream proxy: %s", exc)
    finally:
        up.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await up
