"""The streaming server over loopback: tokens, WebSocket and SPDY sessions."""
from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator

import aiohttp
import pytest

from cri.api import runtime_pb2 as pb
from cri.streaming import exitstatus, spdy
from cri.streaming.server import StreamingServer
from cri.streaming.tokens import TokenStore
from engine.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.unit.cri.streaming.fake_runtime import FakeStreamRuntime


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def streaming(clock: Clock) -> Iterator[StreamingServer]:
    server = StreamingServer(FakeStreamRuntime(), tokens=TokenStore(clock=clock))
    server.start()
    yield server
    server.stop()


async def ws_session(url: str, protocol: str, send: list[bytes]) -> dict[int, bytes]:
    """Send binary messages, then collect everything per channel until the server closes."""
    got: dict[int, bytes] = {}
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url, protocols=(protocol,)) as ws:
        assert ws.protocol == protocol
        for message in send:
            await ws.send_bytes(message)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                got[msg.data[0]] = got.get(msg.data[0], b"") + msg.data[1:]
    return got


def test_urls_are_loopback_and_targets_are_checked(streaming: StreamingServer) -> None:
    url = streaming.prepare_exec(pb.ExecRequest(container_id="c1", cmd=["echo"], stdout=True))
    assert url.startswith("http://127.0.0.1:") and "/exec/" in url
    with pytest.raises(NotFound):
        streaming.prepare_exec(pb.ExecRequest(container_id="nope", cmd=["x"], stdout=True))
    with pytest.raises(FailedPrecondition):
        streaming.prepare_attach(pb.AttachRequest(container_id="stopped", stdout=True))
    with pytest.raises(InvalidArgument):
        StreamingServer(FakeStreamRuntime(), host="0.0.0.0")


def test_websocket_exec_reports_output_and_exit_code(streaming: StreamingServer) -> None:
    url = streaming.prepare_exec(pb.ExecRequest(container_id="c1", cmd=["warn", "oops"],
                                                stdout=True, stderr=True))
    got = asyncio.run(ws_session(url, "v4.channel.k8s.io", []))
    assert got[2] == b"oops\n"
    assert exitstatus.parse_exit_code(got[3]) == 1


def test_websocket_v5_stdin_and_close_channel(streaming: StreamingServer) -> None:
    url = streaming.prepare_exec(pb.ExecRequest(container_id="c1", cmd=["cat"], stdin=True,
                                                stdout=True))
    got = asyncio.run(ws_session(url, "v5.channel.k8s.io", [b"\x00abc", b"\x00def",
                                                             b"\xff\x00"]))
    assert got[1] == b"abcdef"
    assert exitstatus.parse_exit_code(got[3]) == 0


def test_websocket_resize(streaming: StreamingServer) -> None:
    url = streaming.prepare_exec(pb.ExecRequest(container_id="c1", cmd=["size"], tty=True,
                                                stdout=True))
    got = asyncio.run(ws_session(url, "v4.channel.k8s.io",
                                 [b'\x04{"Width":120,"Height":40}']))
    assert got[1] == b"120x40\n"


async def handshake_status(url: str, protocol: str) -> int:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, protocols=(protocol,)):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


def test_tokens_are_single_use_and_expire(streaming: StreamingServer, clock: Clock) -> None:
    request = pb.ExecRequest(container_id="c1", cmd=["exit", "0"], stdout=True)
    url = streaming.prepare_exec(request)
    assert exitstatus.parse_exit_code(
        asyncio.run(ws_session(url, "v4.channel.k8s.io", []))[3]) == 0
    assert asyncio.run(handshake_status(url, "v4.channel.k8s.io")) == 404  # replayed
    late = streaming.prepare_exec(request)
    clock.now += 61
    assert asyncio.run(handshake_status(late, "v4.channel.k8s.io")) == 404  # expired
    other = streaming.prepare_exec(request)
    assert asyncio.run(handshake_status(other.replace("/exec/", "/attach/"),
                                        "v4.channel.k8s.io")) == 404  # wrong kind


def test_protocol_mismatch_is_forbidden(streaming: StreamingServer) -> None:
    url = streaming.prepare_exec(pb.ExecRequest(container_id="c1", cmd=["x"], stdout=True))
    assert asyncio.run(handshake_status(url, "channel.k8s.io")) == 403


def test_websocket_port_forward(streaming: StreamingServer) -> None:
    url = streaming.prepare_port_forward(pb.PortForwardRequest(pod_sandbox_id="s1",
                                                               port=[80, 81]))

    async def run() -> dict[int, list[bytes]]:
        got: dict[int, list[bytes]] = {}
        async with aiohttp.ClientSession() as http, http.ws_connect(
                url + "?port=80&port=81", protocols=("v4.channel.k8s.io",)) as ws:
            await ws.send_bytes(b"\x00ping")
            while sum(len(v) for v in got.values()) < 6:
                msg = await ws.receive(timeout=30)
                got.setdefault(msg.data[0], []).append(msg.data[1:])
        return got

    got = asyncio.run(run())
    assert got[0] == [struct.pack("<H", 80), b"echo:ping"]
    assert got[1] == [struct.pack("<H", 80)]
    assert got[2] == [struct.pack("<H", 81)]
    assert got[3][0] == struct.pack("<H", 81) and b"port 81" in got[3][1]


async def spdy_exec(url: str, *, stdin: bytes | None) -> tuple[bytes, bytes]:
    """A minimal client-go-like SPDY client: stdout and error contents."""
    host_port = url.split("/")[2]
    host, port = host_port.rsplit(":", 1)
    path = "/" + url.split("/", 3)[3]
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write((f"POST {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: Upgrade\r\n"
                  "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
                  "X-Stream-Protocol-Version: v2.channel.k8s.io\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101") and b"v4.channel.k8s.io" in head
    z, frames = spdy.HeaderCompressor(), spdy.FrameReader()
    kinds = {1: "error", 3: "stdout"} | ({5: "stdin"} if stdin is not None else {})
    writer.write(spdy.encode_ping(1))  # first, so it is answered before the session ends
    for sid, kind in kinds.items():
        writer.write(spdy.encode_syn_stream(z, sid, {"streamtype": [kind]}))
    if stdin is not None:
        writer.write(spdy.encode_data(5, stdin, fin=True))
    out = {1: b"", 3: b""}
    fins: set[int] = set()
    replies: set[int] = set()
    pinged = False
    while fins != {1, 3}:
        data = await asyncio.wait_for(reader.read(65536), 5)
        assert data, "server closed early"
        for frame in frames.feed(data):
            if isinstance(frame, spdy.ControlFrame):
                if frame.type == spdy.SYN_REPLY:
                    replies.add(frame.stream_id)
                pinged |= frame.type == spdy.PING
            else:
                out[frame.stream_id] += frame.data
                if frame.fin:
                    fins.add(frame.stream_id)
    writer.close()
    assert replies == set(kinds) and pinged
    return out[3], out[1]


def test_spdy_exec(streaming: StreamingServer) -> None:
    url = streaming.prepare_exec(pb.ExecRequest(container_id="c1", cmd=["cat"], stdin=True,
                                                stdout=True))
    stdout, status = asyncio.run(spdy_exec(url, stdin=b"hello over spdy"))
    assert stdout == b"hello over spdy"
    assert exitstatus.parse_exit_code(status) == 0
    url = streaming.prepare_exec(pb.ExecRequest(container_id="c1", cmd=["exit", "3"],
                                                stdout=True))
    assert exitstatus.parse_exit_code(asyncio.run(spdy_exec(url, stdin=None))[1]) == 3
