"""enginectl run/ps/logs/exec/stop/rm against a real engined (host network: no CNI)."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cri.api import runtime_pb2 as pb
from cri.api import runtime_pb2_grpc
from tests.e2e.enginectl_cli import enginectl, ok, remove_all
from tests.e2e.test_crictl_images import engined_with_registry
from tests.harness.engined import Engined

pytestmark = pytest.mark.e2e
__all__ = ["engined_with_registry"]

BUSYBOX = "docker.io/library/busybox:1.36"


@pytest.fixture
def daemon(engined_with_registry: Engined) -> Iterator[Engined]:
    try:
        yield engined_with_registry
    finally:
        remove_all(engined_with_registry)


def run_detached(daemon: Engined, name: str, script: str) -> str:
    return ok(daemon, "run", "-d", "--network", "host", "--name", name, BUSYBOX,
              "sh", "-c", script).strip()


def wait_for(predicate: object, what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def exec_in_a_terminal(daemon: Engined, container: str, keys: bytes) -> tuple[int, bytes]:
    """`enginectl exec -it CONTAINER sh` on a pseudo-terminal of 24x80: type `keys`, and
    return the exit code and everything the terminal showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cri.ctl.main", "--endpoint", daemon.endpoint, "exec", "-it",
         container, "sh"], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        env={**os.environ, "COLUMNS": "80", "LINES": "24"})
    os.close(slave)
    screen = b""
    try:
        deadline = time.monotonic() + 60
        typed = False
        while proc.poll() is None or select.select([master], [], [], 0)[0]:
            assert time.monotonic() < deadline, f"exec -it did not finish: {screen!r}"
            if select.select([master], [], [], 0.2)[0]:
                try:
                    screen += os.read(master, 4096)
                except OSError:  # the terminal closed with the process
                    break
            if not typed and b"#" in screen:  # the shell's prompt
                os.write(master, keys)
                typed = True
        return proc.wait(timeout=10), screen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_run_attached_returns_the_exit_code_and_rm_cleans_up(
        daemon: Engined) -> None:
    out = enginectl(daemon, "run", "--rm", "--network", "host", "--name", "once", BUSYBOX,
                    "sh", "-c", "echo hello; echo oops >&2; printf no-newline; exit 3")
    assert out.returncode == 3, out.stderr + daemon.log.read_text()[-3000:]
    assert out.stdout == "hello\nno-newline"
    assert "oops\n" in out.stderr
    assert "Unable to find image" in out.stderr  # pulled on first use
    assert json.loads(ok(daemon, "ps", "-a", "-o", "json")) == []  # --rm removed it


def test_detached_container_lifecycle(daemon: Engined) -> None:
    cid = run_detached(daemon, "ticker", "i=0; while true; do echo tick $i; i=$((i+1)); "
                       "sleep 0.2; done")
    assert len(cid) == 64
    row = ok(daemon, "ps").splitlines()[1].split()
    assert (row[0], row[-1], row[-5]) == (cid[:13], "ticker", "Running")

    wait_for(lambda: "tick 3" in ok(daemon, "logs", "ticker"), "four ticks")
    tail = ok(daemon, "logs", "--tail", "2", cid[:10]).splitlines()
    assert len(tail) == 2 and all(t.startswith("tick ") for t in tail)

    execd = enginectl(daemon, "exec", "ticker", "sh", "-c", "echo in-$HOSTNAME; exit 4")
    assert (execd.returncode, execd.stdout) == (4, "in-ticker\n")
    piped = enginectl(daemon, "exec", "-i", "ticker", "sh", "-c", "cat; exit 6",
                      stdin="through the websocket\n")
    assert (piped.returncode, piped.stdout) == (6, "through the websocket\n"), piped.stderr

    # the size travels on its own channel and may land a moment after the shell started:
    # asked until it shows (30 s at most), then printed (the echo never spells it)
    code, screen = exec_in_a_terminal(
        daemon, "ticker", b'i=0; until [ "$(stty size)" = "$((20 + 4)) $((80 + 0))" ] || '
                          b"[ $i -ge 600 ]; do sleep 0.05; i=$((i + 1)); done; stty size; "
                          b"echo $((6*7)); exit 9\r")
    assert code == 9, screen
    assert b"42" in screen and b"24 80" in screen  # our window size reached the container

    refused = enginectl(daemon, "rm", "ticker")
    assert refused.returncode == 125 and "stop it first or use rm -f" in refused.stderr
    assert ok(daemon, "stop", "-t", "1", "ticker") == "ticker\n"
    [status] = json.loads(ok(daemon, "inspect", cid))
    assert (status["kind"], status["state"]) == ("container", "CONTAINER_EXITED")
    assert ok(daemon, "ps") .splitlines()[1:] == []
    pod_logs = Path(status["logPath"]).parent.parent
    assert pod_logs.is_dir()
    assert ok(daemon, "rm", cid[:12]) == f"{cid[:12]}\n"
    assert not pod_logs.exists()  # the pod `run` made went with its logs
    assert json.loads(ok(daemon, "ps", "-a", "-o", "json")) == []
    channel = grpc.insecure_channel(daemon.endpoint)
    runtime = runtime_pb2_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
    assert list(runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items) == []  # pod gone too


def test_logs_follow_across_rotation(daemon: Engined, tmp_path: Path) -> None:
    # it writes until told to stop, not for a fixed time that a slow start could outlast
    cid = run_detached(daemon, "rotor", "i=0; while [ ! -e /tmp/stop ]; do echo line $i; "
                       "i=$((i+1)); sleep 0.1; done")
    err = tmp_path / "stderr"
    with err.open("wb") as err_file:
        follower = subprocess.Popen(
            [sys.executable, "-m", "cri.ctl.main", "--endpoint", daemon.endpoint, "logs",
             "-f", cid], stdout=subprocess.PIPE, stderr=err_file, text=True)
    try:
        [status] = json.loads(ok(daemon, "inspect", cid))
        log = Path(status["logPath"])
        assert follower.stdout is not None
        head = [follower.stdout.readline() for _ in range(3)]  # following the first file
        os.rename(log, log.with_name(log.name + ".1"))  # what the kubelet does, then:
        runtime = runtime_pb2_grpc.RuntimeServiceStub(  # type: ignore[no-untyped-call]
            grpc.insecure_channel(daemon.endpoint))
        runtime.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid))
        wait_for(lambda: log.exists() and b" F line " in log.read_bytes(),
                 "a line in the reopened log", timeout_s=60)
        ok(daemon, "exec", "rotor", "touch", "/tmp/stop")
        follower.wait(timeout=60)  # it ends when the container exits
        rest = follower.stdout.read()  # short lines for a few seconds: the pipe holds them
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err.read_text()
    lines = head + rest.splitlines(keepends=True)
    assert len(lines) > 3 and lines == [f"line {i}\n" for i in range(len(lines))], lines
    last = f" F {lines[-1]}".encode()
    assert log.exists() and last in log.read_bytes()  # written after the reopen
    assert last not in log.with_name(log.name + ".1").read_bytes()
