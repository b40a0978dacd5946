"""A client that drops its connection mid-stream (no close frame, no FIN of its streams):
the session tells the runtime its client is gone (the engine then kills the command, see
tests/e2e/test_crictl_pod_lifecycle.py) and a forwarded connection is closed, for WebSocket
and SPDY; the server keeps serving and no task is left running on its loop. Also SPDY's
port-forward streams and resize stream, which only the e2e tests reached before."""
from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable, Iterator

import pytest

from cri.api import runtime_pb2 as pb
from cri.streaming import spdy
from cri.streaming.server import StreamingServer
from cri.streaming.session import SessionIO
from tests.unit.cri.streaming.fake_runtime import FakeStreamRuntime


class HangingRuntime(FakeStreamRuntime):
    """`hang`: writes a line, then runs until the session says its client is gone (the
    StreamRuntime contract: the engine ends the command then); records that."""

    def __init__(self) -> None:
        super().__init__()
        self.started = 0
        self.ended: list[str] = []

    async def exec(self, request: pb.ExecRequest, io: SessionIO) -> int:
        if list(request.cmd) != ["hang"]:
            return await super().exec(request, io)
        self.started += 1
        await io.write_stdout(b"up\n")
        await io.wait_gone()
        self.ended.append("gone")
        return 137


@pytest.fixture
def runtime() -> HangingRuntime:
    return HangingRuntime()


@pytest.fixture
def streaming(runtime: HangingRuntime) -> Iterator[StreamingServer]:
    server = StreamingServer(runtime)
    server.start()
    yield server
    server.stop()


def _wait(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


async def _raw_upgrade(url: str, headers: list[str]) -> tuple[asyncio.StreamReader,
                                                              asyncio.StreamWriter]:
    host_port = url.split("/")[2]
    host, port = host_port.rsplit(":", 1)
    path = "/" + url.split("/", 3)[3]
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write((f"GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: Upgrade\r\n"
                  + "".join(h + "\r\n" for h in headers) + "\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop the TCP connection without any goodbye of the upper protocol."""
    transport = writer.transport
    assert isinstance(transport, asyncio.Transport)
    transport.abort()


def _ws_headers(protocol: str) -> list[str]:
    key = base64.b64encode(os.urandom(16)).decode()
    return ["Upgrade: websocket", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
            f"Sec-WebSocket-Protocol: {protocol}"]


def test_websocket_exec_is_cancelled_when_the_client_vanishes(
        streaming: StreamingServer, runtime: HangingRuntime) -> None:
    url = streaming.prepare_exec(pb.ExecRequest(container_id="c1", cmd=["hang"], stdin=True,
                                                stdout=True))

    async def run() -> None:
        reader, writer = await _raw_upgrade(url, _ws_headers("v5.channel.k8s.io"))
        await asyncio.wait_for(reader.read(64), 30)  # the "up" line's frame
        _abort(writer)

    asyncio.run(run())
    assert _wait(lambda: runtime.ended == ["gone"]), runtime.ended


def test_spdy_exec_is_cancelled_when_the_client_vanishes(
        streaming: StreamingServer, runtime: HangingRuntime) -> None:
    url = streaming.prepare_exec(pb.ExecRequest(container_id="c1", cmd=["hang"], stdin=True,
                                                stdout=True))

    async def run() -> None:
        reader, writer = await _raw_upgrade(url, [
            "Upgrade: SPDY/3.1", "X-Stream-Protocol-Version: v4.channel.k8s.io"])
        z = spdy.HeaderCompressor()
        for sid, kind in ((1, "error"), (3, "stdout"), (5, "stdin")):
            writer.write(spdy.encode_syn_stream(z, sid, {"streamtype": [kind]}))
        while runtime.started == 0:
            await asyncio.wait_for(reader.read(4096), 30)
        _abort(writer)

    asyncio.run(run())
    assert _wait(lambda: runtime.ended == ["gone"]), runtime.ended


def test_websocket_port_forward_closes_the_connection_when_the_client_vanishes(
        streaming: StreamingServer, runtime: HangingRuntime) -> None:
    url = streaming.prepare_port_forward(pb.PortForwardRequest(pod_sandbox_id="s1", port=[80]))

    async def run() -> None:
        _reader, writer = await _raw_upgrade(url + "?port=80",
                                            _ws_headers("v4.channel.k8s.io"))
        # the runtime's connection is made as the stream opens; the server's first frames
        # (the port numbers) may come before or after it, so wait on it, not on data
        deadline = asyncio.get_running_loop().time() + 30
        while not runtime.connections:
            assert asyncio.get_running_loop().time() < deadline, "no runtime connection"
            await asyncio.sleep(0.01)
        _abort(writer)

    asyncio.run(run())
    assert _wait(lambda: bool(runtime.connections) and runtime.connections[0].closed)


def test_the_server_keeps_serving_and_its_loop_holds_no_stale_task(
        streaming: StreamingServer, runtime: HangingRuntime) -> None:
    loop = streaming._loop  # what runs on the server's own loop
    assert loop is not None

    def tasks() -> int:
        return asyncio.run_coroutine_threadsafe(_count_tasks(), loop).result(30)

    idle = tasks()
    for _ in range(3):
        test_websocket_exec_is_cancelled_when_the_client_vanishes(streaming, runtime)
        runtime.ended.clear()
    assert _wait(lambda: tasks() <= idle), (tasks(), idle)


async def _count_tasks() -> int:
    return len(asyncio.all_tasks()) - 1  # without this one


async def _spdy_frames(reader: asyncio.StreamReader, frames: spdy.FrameReader,
                       until: Callable[[list[object]], bool]) -> list[object]:
    got: list[object] = []
    while not until(got):
        data = await asyncio.wait_for(reader.read(65536), 30)
        assert data, "server closed early"
        got += frames.feed(data)
    return got


def _data_of(frames: list[object], stream_id: int) -> bytes:
    return b"".join(f.data for f in frames
                    if isinstance(f, spdy.DataFrame) and f.stream_id == stream_id)


def test_spdy_port_forward_echoes_refuses_and_closes_on_disconnect(
        streaming: StreamingServer, runtime: HangingRuntime) -> None:
    """client-go's SPDY port-forward: an error+data stream pair per request ID with a `port`
    header; a port not asked for in PortForward gets its error on the error stream."""
    url = streaming.prepare_port_forward(pb.PortForwardRequest(pod_sandbox_id="s1", port=[80]))

    async def run() -> tuple[bytes, bytes]:
        reader, writer = await _raw_upgrade(url, [
            "Upgrade: SPDY/3.1", "X-Stream-Protocol-Version: portforward.k8s.io"])
        z, frames = spdy.HeaderCompressor(), spdy.FrameReader()
        for sid, kind, port, rid in ((1, "error", "80", "0"), (3, "data", "80", "0"),
                                     (5, "error", "82", "1"), (7, "data", "82", "1")):
            writer.write(spdy.encode_syn_stream(z, sid, {"streamtype": [kind], "port": [port],
                                                         "requestid": [rid]}))
        writer.write(spdy.encode_data(3, b"ping"))
        got = await _spdy_frames(reader, frames, lambda g: b"echo:ping" in _data_of(g, 3)
                                 and b"not requested" in _data_of(g, 5))
        _abort(writer)
        return _data_of(got, 3), _data_of(got, 5)

    echoed, refused = asyncio.run(run())
    assert echoed == b"echo:ping"
    assert b"port 82 was not requested in PortForward" in refused
    assert _wait(lambda: len(runtime.connections) == 1 and runtime.connections[0].closed)


def test_spdy_resize_reaches_the_session(streaming: StreamingServer,
                                         runtime: HangingRuntime) -> None:
    url = streaming.prepare_exec(pb.ExecRequest(container_id="c1", cmd=["size"], tty=True,
                                                stdout=True))

    async def run() -> bytes:
        reader, writer = await _raw_upgrade(url, [
            "Upgrade: SPDY/3.1", "X-Stream-Protocol-Version: v4.channel.k8s.io"])
        z, frames = spdy.HeaderCompressor(), spdy.FrameReader()
        for sid, kind in ((1, "error"), (3, "stdout"), (5, "resize")):
            writer.write(spdy.encode_syn_stream(z, sid, {"streamtype": [kind]}))
        writer.write(spdy.encode_data(5, b'{"Width":132,"Height":43}'))
        got = await _spdy_frames(reader, frames, lambda g: b"132x43" in _data_of(g, 3))
        writer.close()
        return _data_of(got, 3)

    assert asyncio.run(run()) == b"132x43\n"
    assert [(s.width, s.height) for s in runtime.resizes] == [(132, 43)]
