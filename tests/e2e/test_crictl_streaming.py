"""crictl exec, attach and port-forward through our streaming server, SPDY and WebSocket.

The CRI server runs in this process over fake containers whose commands are built into
the fake stream runtime: what is under test is the wire (token URLs, upgrade, framing,
exit codes) against the real client.
"""
from __future__ import annotations

import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri.api import runtime_pb2 as pb
from cri.server.ports import Ports
from cri.server.serve import CriServer
from cri.streaming.server import StreamingServer
from tests.harness.prereq import need_tool
from tests.unit.cri.fakes import FakeContainers, FakeImages, FakeSandboxes
from tests.unit.cri.streaming.fake_runtime import FakeStreamRuntime

pytestmark = pytest.mark.e2e

CONTAINER = "c1" + "0" * 62


class Env:
    def __init__(self, workdir: Path, server: CriServer, streaming: StreamingServer) -> None:
        self.streaming = streaming
        self.config = workdir / "crictl.yaml"
        self.config.write_text(f"runtime-endpoint: {server.endpoint}\n"
                               f"image-endpoint: {server.endpoint}\ntimeout: 10\n")

    def crictl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(need_tool("crictl")), "--config", str(self.config), *args],
                              input=stdin, capture_output=True, text=True, timeout=60,
                              check=False)


@pytest.fixture
def env() -> Iterator[Env]:
    runtime = FakeStreamRuntime()
    runtime.running.add(CONTAINER)
    containers = FakeContainers()
    containers.items[CONTAINER] = pb.Container(
        id=CONTAINER, pod_sandbox_id="s1", state=pb.CONTAINER_RUNNING,
        metadata=pb.ContainerMetadata(name="web"))
    sandboxes = FakeSandboxes()
    sandboxes.items["s1" + "0" * 62] = pb.PodSandbox(id="s1" + "0" * 62,
                                                    state=pb.SANDBOX_READY)
    runtime.sandboxes.add("s1" + "0" * 62)
    streaming = StreamingServer(runtime)
    streaming.start()
    with tempfile.TemporaryDirectory(prefix="cri-e2e-", dir="/tmp") as d:
        server = CriServer(listen=f"unix://{d}/cri.sock", ports=Ports(
            containers=containers, sandboxes=sandboxes, streaming=streaming,
            images=FakeImages()))  # crictl checks ImageFsInfo before any command
        server.start()
        try:
            yield Env(Path(d), server, streaming)
        finally:
            server.stop(0.5)
            streaming.stop()


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_crictl_exec_output_and_exit_code(env: Env, transport: str) -> None:
    out = env.crictl("exec", "--transport", transport, CONTAINER, "echo", "hello", "world")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "hello world\n"
    failed = env.crictl("exec", "--transport", transport, CONTAINER, "exit", "7")
    # crictl exits 1 for a streamed exec; client-go decoded our Status into this message
    assert failed.returncode == 1
    assert "command terminated with exit code 7" in failed.stderr


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_crictl_exec_stdin(env: Env, transport: str) -> None:
    out = env.crictl("exec", "-i", "--transport", transport, CONTAINER, "cat",
                     stdin="line one\nline two\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "line one\nline two\n"


def test_crictl_exec_stderr(env: Env) -> None:
    out = env.crictl("exec", CONTAINER, "warn", "careful")
    assert out.returncode == 1
    assert out.stderr.startswith("careful\n")
    assert "exit code 1" in out.stderr


def test_crictl_attach(env: Env) -> None:
    out = env.crictl("attach", CONTAINER)
    assert out.returncode == 0, out.stderr
    assert "attached" in out.stdout


def test_crictl_exec_on_an_unknown_container_fails_precisely(env: Env) -> None:
    out = env.crictl("exec", "f" * 64, "echo")
    assert out.returncode != 0
    assert "NotFound" in out.stderr or "not found" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_crictl_port_forward(env: Env, transport: str) -> None:
    local = _free_port()
    proc = subprocess.Popen([str(need_tool("crictl")), "--config", str(env.config),
                             "port-forward", "--transport", transport, "s1" + "0" * 62,
                             f"{local}:80"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", local), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        with conn:
            conn.sendall(b"ping")
            assert conn.recv(100) == b"echo:ping"
    finally:
        proc.terminate()
        proc.wait(10)


def test_streaming_server_is_on_loopback_and_refuses_unknown_tokens(env: Env) -> None:
    assert env.streaming.base_url.startswith("http://127.0.0.1:")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(env.streaming.base_url + "/exec/not-a-token",
                               timeout=5)
    assert info.value.code == 404
