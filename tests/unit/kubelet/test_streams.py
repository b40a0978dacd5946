"""/exec, /attach, /portForward: the CRI call made, the upgrade replayed to the runtime's
streaming URL, bytes copied both ways, refusals passed on."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import MultiDict

from kubelet_py.pods.model import Pod, PodRuntime, RuntimeContainer, RuntimeSandbox, State
from kubelet_py.server.http import KubeletServer
from kubelet_py.server.streams import StreamRequestError, stream_options

from .fakes import run_async

POD: Pod = {"metadata": {"name": "web", "namespace": "ns", "uid": "u1"}}
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Pods:
    def pods(self) -> list[Pod]:
        return [POD]

    def find(self, namespace: str, name: str) -> Pod | None:
        return POD if (namespace, name) == ("ns", "web") else None


class Backend:
    """A runtime streaming server: answers the upgrade (or refuses it), then echoes."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.heads: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.heads.append(await reader.readuntil(b"\r\n\r\n"))
        if self.refuse:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n"
                         b"Content-Type: text/plain\r\n\r\nnope")
        else:
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                         b"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io"
                         b"\r\n\r\n")
            while data := await reader.read(1024):
                writer.write(data.upper())
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


class Streaming:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.calls: list[tuple[Any, ...]] = []

    def _url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.backend.port}/{kind}/tok123"

    async def exec(self, container_id: str, cmd: Sequence[str], *, tty: bool, stdin: bool,
                   stdout: bool, stderr: bool) -> str:
        self.calls.append(("exec", container_id, tuple(cmd), tty, stdin, stdout, stderr))
        return self._url("exec")

    async def attach(self, container_id: str, *, tty: bool, stdin: bool, stdout: bool,
                     stderr: bool) -> str:
        self.calls.append(("attach", container_id, tty, stdin, stdout, stderr))
        return self._url("attach")

    async def port_forward(self, sandbox_id: str, ports: Sequence[int]) -> str:
        self.calls.append(("portforward", sandbox_id, tuple(ports)))
        return self._url("portforward")


def runtime(state: State = State.RUNNING) -> PodRuntime:
    return PodRuntime(
        sandboxes=(RuntimeSandbox(id="sb1", attempt=0, ready=True, created_at=T0),),
        containers=(RuntimeContainer(id="c1", name="app", attempt=0, state=state,
                                     sandbox_id="sb1"),))


async def serve(streaming: Streaming, state: State = State.RUNNING
                ) -> tuple[web.AppRunner, int]:
    async def rt(uid: str) -> PodRuntime:
        assert uid == "u1"
        return runtime(state)

    server = KubeletServer(pods=Pods(), runtime=rt, auth=None, log_root=Path("/nonexistent"),
                           streaming=streaming)
    runner = web.AppRunner(server.app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


async def upgrade(port: int, path: str, *, extra: str = "", proto: str = "SPDY/3.1"
                  ) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n"
                 f"Connection: Upgrade\r\nUpgrade: {proto}\r\n"
                 f"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
                 f"X-Stream-Protocol-Version: v3.channel.k8s.io\r\n{extra}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    return head, reader, writer


@pytest.mark.parametrize("proto", ["SPDY/3.1", "websocket"])
@run_async
async def test_exec_proxies_upgrade_and_bytes(proto: str) -> None:
    backend = Backend()
    await backend.start()
    streaming = Streaming(backend)
    runner, port = await serve(streaming)
    try:
        head, reader, writer = await upgrade(
            port, "/exec/ns/web/app?command=sh&command=-c&command=echo+hi&input=1&output=1"
                  "&error=1", proto=proto,
            extra="Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"
                  "\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        assert b"X-Stream-Protocol-Version: v4.channel.k8s.io" in head
        assert b"Transfer-Encoding" not in head
        # SPDY frames are binary: any byte sequence, including an HTTP-looking one.
        writer.write(b"GET / HTTP/1.1\r\n\x00\x01frame")
        await writer.drain()
        got = b""
        while len(got) < 23:
            got += await asyncio.wait_for(reader.read(100), 30)
        assert got == b"GET / HTTP/1.1\r\n\x00\x01FRAME"
        writer.close()
        assert streaming.calls == [("exec", "c1", ("sh", "-c", "echo hi"), False, True, True,
                                    True)]
        sent = backend.heads[0].decode()
        assert sent.startswith("POST /exec/tok123 HTTP/1.1\r\n")
        assert f"Upgrade: {proto}" in sent and "v3.channel.k8s.io" in sent
        assert "Sec-WebSocket-Protocol: v5.channel.k8s.io" in sent
        assert "Authorization" not in sent  # the apiserver's credentials stay on this hop
    finally:
        await runner.cleanup()
        await backend.stop()


@run_async
async def test_attach_tty_and_port_forward() -> None:
    backend = Backend()
    await backend.start()
    streaming = Streaming(backend)
    runner, port = await serve(streaming)
    try:
        head, _, writer = await upgrade(port, "/attach/ns/web/u1/app?input=1&output=1&tty=1"
                                              "&error=1")
        assert head.startswith(b"HTTP/1.1 101")
        writer.close()
        head, _, writer = await upgrade(port, "/portForward/ns/web?port=80&port=8080")
        assert head.startswith(b"HTTP/1.1 101")
        writer.close()
        assert streaming.calls == [("attach", "c1", True, True, True, False),
                                   ("portforward", "sb1", (80, 8080))]
    finally:
        await runner.cleanup()
        await backend.stop()


@run_async
async def test_refusals() -> None:
    backend = Backend(refuse=True)
    await backend.start()
    streaming = Streaming(backend)
    runner, port = await serve(streaming)
    try:
        head, reader, _ = await upgrade(port, "/exec/ns/web/app?command=ls&output=1")
        assert head.startswith(b"HTTP/1.1 403")  # the runtime's answer, passed on
        assert b"nope" in await reader.read(100)
        for path, code in (("/exec/ns/other/app?command=ls&output=1", b"404"),
                           ("/exec/ns/web/nope?command=ls&output=1", b"404"),
                           ("/exec/ns/web/app?output=1", b"400"),
                           ("/exec/ns/web/app?command=ls", b"400"),
                           ("/exec/ns/web/u2/app?command=ls&output=1", b"404"),
                           ("/portForward/ns/web?port=99999", b"400")):
            head, _, writer = await upgrade(port, path)
            assert head.split(b" ")[1] == code, (path, head)
            writer.close()
        # not an upgrade at all
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /exec/ns/web/app?command=ls&output=1 HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 0\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).split(b" ")[1] == b"400"
        writer.close()
    finally:
        await runner.cleanup()
        await backend.stop()


@run_async
async def test_container_not_running() -> None:
    backend = Backend()
    await backend.start()
    runner, port = await serve(Streaming(backend), State.EXITED)
    try:
        head, _, writer = await upgrade(port, "/exec/ns/web/app?command=ls&output=1")
        assert head.split(b" ")[1] == b"400"
        writer.close()
    finally:
        await runner.cleanup()
        await backend.stop()


def test_stream_options() -> None:
    opts = stream_options(MultiDict([("command", "ls"), ("output", "true"),
                                     ("error", "1"), ("tty", "1")]), exec_=True)
    assert (opts.command, opts.stdout, opts.stderr, opts.tty) == (("ls",), True, False, True)
    try:
        stream_options(MultiDict([("command", "ls")]), exec_=True)
    except StreamRequestError as exc:
        assert exc.code == 400
    else:
        raise AssertionError("no streams accepted")
