"""EngineStreams.attach: the CRI adapter between a streaming session and the engine's
AttachSession. The far end of the attach socket plays the pod monitor (engine.shim.attach
frames), so what is checked is the pumping, stdin_once and the exit code."""
from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from typing import Any, cast

from cri.api import runtime_pb2 as pb
from cri.server.engine_streams import EngineStreams
from cri.streaming.session import SessionIO
from engine.runtime.attach import AttachSession
from engine.runtime.state import ContainerState
from engine.runtime.status import Status
from engine.shim import attach as frames


@dataclasses.dataclass
class _Config:
    stdin_once: bool


@dataclasses.dataclass
class _Record:
    config: _Config


@dataclasses.dataclass
class _Info:
    record: _Record
    state: ContainerState


class FakeMonitor:
    """Echoes each stdin frame back as stdout, says 'bye' on stderr at CLOSE_STDIN and then
    ends the stream, as a shell reading its stdin would."""

    def __init__(self, *, stdin_once: bool) -> None:
        self.stdin_once = stdin_once
        self.received: list[tuple[int, bytes]] = []
        self.exited = threading.Event()
        self.client, self._far = socket.socketpair()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        reader = frames.FrameReader()
        with self._far:
            while data := self._far.recv(65536):
                for kind, payload in reader.feed(data):
                    self.received.append((kind, payload))
                    if kind == frames.STDIN:
                        self._far.sendall(frames.frame(frames.STDOUT, payload))
                    elif kind == frames.CLOSE_STDIN:
                        self._far.sendall(frames.frame(frames.STDERR, b"bye"))
                        self.exited.set()
                        return

    # the Runtime methods EngineStreams.attach uses
    def container_status(self, cid: str) -> _Info:
        return _Info(_Record(_Config(self.stdin_once)), ContainerState(status=Status.RUNNING))

    def attach(self, cid: str) -> AttachSession:
        return AttachSession(self.client, tty=False, stdin=True)

    def wait_container(self, cid: str, *, timeout: float) -> ContainerState:
        assert self.exited.wait(timeout)
        return ContainerState(status=Status.EXITED, exit_code=3)


def _session(out: list[bytes], err: list[bytes]) -> SessionIO:
    async def w_out(data: bytes) -> None:
        out.append(data)

    async def w_err(data: bytes) -> None:
        err.append(data)

    return SessionIO(stdout=w_out, stderr=w_err, stdin=True, tty=False)


def _request() -> pb.AttachRequest:
    return pb.AttachRequest(container_id="c" * 64, stdin=True, stdout=True, stderr=True)


def test_attach_pumps_stdin_and_output_and_returns_the_exit_code() -> None:
    monitor = FakeMonitor(stdin_once=True)
    streams = EngineStreams(cast(Any, monitor))
    out: list[bytes] = []
    err: list[bytes] = []

    async def run() -> int:
        io = _session(out, err)
        io.feed_stdin(b"echo hello\n")
        io.close_stdin()
        return await asyncio.wait_for(streams.attach(_request(), io), 10)

    assert asyncio.run(run()) == 3
    assert b"".join(out) == b"echo hello\n"
    assert err == [b"bye"]
    assert monitor.received == [(frames.STDIN, b"echo hello\n"), (frames.CLOSE_STDIN, b"")]


def test_attach_keeps_the_containers_stdin_open_without_stdin_once() -> None:
    monitor = FakeMonitor(stdin_once=False)
    streams = EngineStreams(cast(Any, monitor))
    out: list[bytes] = []

    async def run() -> int:
        io = _session(out, [])
        task = asyncio.create_task(streams.attach(_request(), io))
        io.feed_stdin(b"x")
        io.close_stdin()
        while not out:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert not task.done()  # stdin ended but the container's stdin stays open
        io.close()  # the client leaves: the session ends, the container is left running
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(run()) == 0
    assert (frames.CLOSE_STDIN, b"") not in monitor.received
    assert not monitor.exited.is_set()
