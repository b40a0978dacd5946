"""A pod's whole life through crictl against engined with the real engine (host network,
so no CNI is needed): runp, create, start, ps, exec, exec -s, logs, stats, inspect,
events, stop, rm, stopp, rmp."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_crictl_basic import crictl
from tests.harness.engined import Engined, private_engined
from tests.harness.prereq import need_tool
from tests.harness.registry import LocalRegistry

pytestmark = pytest.mark.e2e

BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
NODE, CONTAINER_NS = 2, 1  # NamespaceMode values


@pytest.fixture
def daemon(local_registry: LocalRegistry) -> Iterator[Engined]:
    with private_engined(registry_hosts=local_registry.root / "mirrors.yaml",
                         graph_driver="vfs") as engined:
        yield engined


def write_configs(daemon: Engined, command: list[str]) -> tuple[Path, Path]:
    ns = {"network": NODE, "pid": CONTAINER_NS}
    pod = {"metadata": {"name": "web", "namespace": "e2e", "uid": "uid-web"},
           "log_directory": str(daemon.workdir / "logs"),
           "linux": {"security_context": {"namespace_options": ns}}}
    ctr = {"metadata": {"name": "main"}, "image": {"image": BUSYBOX}, "command": command,
           "log_path": "main/0.log", "labels": {"app": "web"},
           "linux": {"security_context": {"namespace_options": ns}}}
    pod_file, ctr_file = daemon.workdir / "pod.json", daemon.workdir / "ctr.json"
    pod_file.write_text(json.dumps(pod))
    ctr_file.write_text(json.dumps(ctr))
    return pod_file, ctr_file


def ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _until_watched(daemon: Engined, events: list[dict[str, object]],
                   watcher: subprocess.Popen[str]) -> None:
    """Until the watcher gets events: it subscribes a while after it starts, and an event
    before that is not for it. A probe pod made and removed until one of its shows."""
    deadline = time.monotonic() + 60
    while True:
        probe = ok(crictl(daemon, "runp", str(_probe_config(daemon))))
        ok(crictl(daemon, "stopp", probe))
        ok(crictl(daemon, "rmp", probe))
        wait_until = time.monotonic() + 1
        while time.monotonic() < wait_until:
            if any(e.get("containerId") == probe for e in list(events)):
                return
            time.sleep(0.05)
        assert watcher.poll() is None, "crictl events exited"
        assert time.monotonic() < deadline, "crictl events got no event within 60 s"


def _probe_config(daemon: Engined) -> Path:
    path = daemon.workdir / "probe-pod.json"
    ns = {"network": NODE, "pid": CONTAINER_NS}
    path.write_text(json.dumps({
        "metadata": {"name": "probe", "namespace": "e2e", "uid": "uid-probe"},
        "log_directory": str(daemon.workdir / "logs"),
        "linux": {"security_context": {"namespace_options": ns}}}))
    return path


def test_pod_lifecycle(daemon: Engined) -> None:
    events: list[dict[str, object]] = []
    crictl(daemon, "version")  # writes crictl.yaml before the watcher reads it
    watcher = subprocess.Popen(
        [str(need_tool("crictl")), "--config", str(daemon.workdir / "crictl.yaml"), "events",
         "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def collect() -> None:
        assert watcher.stdout is not None
        buf = ""
        for line in watcher.stdout:
            buf += line
            if line.startswith("}"):
                events.append(json.loads(buf))
                buf = ""

    threading.Thread(target=collect, daemon=True).start()
    try:
        _until_watched(daemon, events, watcher)
        ok(crictl(daemon, "pull", BUSYBOX))
        pod_file, ctr_file = write_configs(
            daemon, ["/bin/sh", "-c", "echo started; exec sleep 300"])
        pod = ok(crictl(daemon, "runp", str(pod_file)))
        cid = ok(crictl(daemon, "create", pod, str(ctr_file), str(pod_file)))
        ok(crictl(daemon, "start", cid))
        listed = json.loads(ok(crictl(daemon, "ps", "-o", "json", "--label", "app=web")))
        assert [c["id"] for c in listed["containers"]] == [cid]
        assert listed["containers"][0]["state"] == "CONTAINER_RUNNING"
        assert ok(crictl(daemon, "exec", cid, "echo", "via-spdy")) == "via-spdy"
        assert ok(crictl(daemon, "exec", "--transport", "websocket", cid, "echo",
                         "via-ws")) == "via-ws"
        assert ok(crictl(daemon, "exec", "-s", cid, "echo", "sync-out")) == "sync-out"
        sync = crictl(daemon, "exec", "-s", cid, "sh", "-c", "echo out; exit 3")
        assert sync.returncode == 1  # crictl's cri-client turns the exit code into an error
        assert "exited with 3" in sync.stderr
        assert "started" in ok(crictl(daemon, "logs", cid))
        stats = json.loads(ok(crictl(daemon, "stats", "-o", "json", cid)))["stats"][0]
        assert int(stats["cpu"]["usageCoreNanoSeconds"]["value"]) > 0
        podstats = json.loads(ok(crictl(daemon, "statsp", "-o", "json")))["stats"]
        assert [p["attributes"]["id"] for p in podstats] == [pod]
        names = {d["name"] for d in json.loads(ok(crictl(daemon, "metricdescs", "-o",
                                                         "json")))["descriptors"]}
        metrics = json.loads(ok(crictl(daemon, "metricsp", "-o", "json")))["podMetrics"]
        assert metrics[0]["podSandboxId"] == pod
        assert {m["name"] for m in metrics[0]["metrics"]} == names
        ok(crictl(daemon, "update", "--memory", str(256 << 20), cid))
        assert "CGROUPFS" in ok(crictl(daemon, "runtime-config"))
        ok(crictl(daemon, "update-runtime-config", "--pod-cidr", "10.244.7.0/24"))
        inspected = json.loads(ok(crictl(daemon, "inspect", cid)))
        assert inspected["status"]["state"] == "CONTAINER_RUNNING"
        assert inspected["status"]["imageId"].startswith("sha256:")
        assert json.loads(ok(crictl(daemon, "inspectp", pod)))["status"]["state"] == (
            "SANDBOX_READY")
        ok(crictl(daemon, "stop", "-t", "2", cid))
        stopped = json.loads(ok(crictl(daemon, "inspect", cid)))["status"]
        assert stopped["state"] == "CONTAINER_EXITED"
        ok(crictl(daemon, "stop", cid))  # stopping twice succeeds
        ok(crictl(daemon, "rm", cid))
        ok(crictl(daemon, "stopp", pod))
        ok(crictl(daemon, "rmp", pod))
        assert json.loads(ok(crictl(daemon, "pods", "-o", "json")))["items"] == []
        deadline = time.monotonic() + 60  # the last event may still be on its way
        while time.monotonic() < deadline and not any(
                e.get("containerId") == pod
                and e["containerEventType"] == "CONTAINER_DELETED_EVENT" for e in events):
            time.sleep(0.05)
    finally:
        watcher.terminate()
        watcher.wait(10)
    every = ["CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT", "CONTAINER_STOPPED_EVENT",
             "CONTAINER_DELETED_EVENT"]
    kinds = [e["containerEventType"] for e in events if e.get("containerId") == cid]
    assert kinds == every
    # like containerd, the sandbox's own lifecycle comes as events with its ID
    pod_events = [e for e in events if e.get("containerId") == pod]
    assert [e["containerEventType"] for e in pod_events] == every
    assert pod_events[0]["podSandboxStatus"]["id"] == pod


def test_a_container_that_exits_on_its_own_is_reported(daemon: Engined) -> None:
    ok(crictl(daemon, "pull", BUSYBOX))
    pod_file, ctr_file = write_configs(daemon, ["/bin/sh", "-c", "exit 7"])
    pod = ok(crictl(daemon, "runp", str(pod_file)))
    cid = ok(crictl(daemon, "create", pod, str(ctr_file), str(pod_file)))
    ok(crictl(daemon, "start", cid))
    deadline = time.monotonic() + 60
    while (status := json.loads(ok(crictl(daemon, "inspect", cid)))["status"])[
            "state"] != "CONTAINER_EXITED" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status["state"] == "CONTAINER_EXITED"
    assert status["exitCode"] == 7
    assert status["reason"] == "Error"
    exec_on_exited = crictl(daemon, "exec", "-s", cid, "true")
    assert exec_on_exited.returncode != 0
    assert "FailedPrecondition" in exec_on_exited.stderr


def start_pod(daemon: Engined, command: list[str]) -> tuple[str, str]:
    ok(crictl(daemon, "pull", BUSYBOX))
    pod_file, ctr_file = write_configs(daemon, command)
    pod = ok(crictl(daemon, "runp", str(pod_file)))
    cid = ok(crictl(daemon, "create", pod, str(ctr_file), str(pod_file)))
    ok(crictl(daemon, "start", cid))
    return pod, cid


@contextlib.contextmanager
def tty_shell(daemon: Engined, cid: str, *, rows: int, cols: int,
              transport: str = "") -> Iterator[tuple[subprocess.Popen[bytes], int, bytes]]:
    """`crictl exec -it <cid> sh` on a pseudo-terminal of `rows` x `cols`. Yields crictl,
    the terminal's master end and what it showed once the shell said it has a TTY of that
    size; kills crictl and closes the terminal on the way out.

    `test -t 0`: stdin is a terminal (isatty), so the session really has a TTY; crictl sends
    the terminal's size over the resize stream. Typed at the prompt, as a user would: the
    image's shell (Debian's busybox) asks the terminal for the cursor position when it
    shows its prompt, and may swallow what was typed before."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen([str(need_tool("crictl")), "--config",
                             str(daemon.workdir / "crictl.yaml"), "exec", "-it",
                             *(["--transport", transport] if transport else []), cid, "sh"],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        typed = False
        size = f"{rows} {cols}".encode()
        while b"tty42" not in seen or size not in seen:
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                seen += os.read(master, 4096)
            if not typed and b"# " in seen:
                # the size travels on its own stream and may land a moment after the
                # shell started: asked until it shows (30 s at most), then printed (the
                # echoed line never spells the size itself)
                os.write(master, b"test -t 0 && echo tty$((6*7)); i=0; until [ "
                         b'"$(stty size)" = "$((%d + 0)) $((%d + 0))" ] || [ $i -ge 600 ];'
                         b" do sleep 0.05; i=$((i + 1)); done; stty size\n" % (rows, cols))
                typed = True
        yield proc, master, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_exec_with_a_real_tty(daemon: Engined) -> None:
    _, cid = start_pod(daemon, ["/bin/sh", "-c", "exec sleep 300"])
    with tty_shell(daemon, cid, rows=33, cols=101) as (proc, master, _):
        os.write(master, b"exit 0\n")
        assert proc.wait(20) == 0


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_port_forward_into_a_host_network_pod(daemon: Engined, transport: str) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        remote = server.getsockname()[1]

        def echo_once() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"echo:" + conn.recv(100))

        threading.Thread(target=echo_once, daemon=True).start()
        pod, _ = start_pod(daemon, ["/bin/sh", "-c", "exec sleep 300"])
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            local = probe.getsockname()[1]
        forward = subprocess.Popen([str(need_tool("crictl")), "--config",
                                    str(daemon.workdir / "crictl.yaml"), "port-forward",
                                    "--transport", transport, pod, f"{local}:{remote}"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    conn = socket.create_connection(("127.0.0.1", local), timeout=10)
                    break
                except OSError:
                    assert time.monotonic() < deadline and forward.poll() is None
                    time.sleep(0.1)
            with conn:
                conn.sendall(b"hi")
                assert conn.recv(100) == b"echo:hi"
        finally:
            forward.terminate()
            forward.wait(10)


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_a_disconnected_exec_client_leaves_no_command_behind(daemon: Engined,
                                                             transport: str) -> None:
    _, cid = start_pod(daemon, ["/bin/sh", "-c", "exec sleep 300"])
    client = subprocess.Popen([str(need_tool("crictl")), "--config",
                               str(daemon.workdir / "crictl.yaml"), "exec", "--transport",
                               transport, cid, "sleep", "271"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def sleepers() -> int:
        return ok(crictl(daemon, "exec", "-s", cid, "ps", "-o", "args")).count("sleep 271")

    deadline = time.monotonic() + 60
    while sleepers() == 0:
        assert time.monotonic() < deadline, "the exec never started"
        time.sleep(0.2)
    client.kill()  # the connection drops without any goodbye
    client.wait()
    deadline = time.monotonic() + 60
    while sleepers():
        assert time.monotonic() < deadline, "the exec'd command outlived its client"
        time.sleep(0.2)


def test_logs_follow_and_reopen(daemon: Engined) -> None:
    _, cid = start_pod(daemon, ["/bin/sh", "-c",
                                "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.2; done"])
    ok(crictl(daemon, "logs", "--reopen", cid))  # ReopenContainerLog on a running container
    follow = subprocess.Popen([str(need_tool("crictl")), "--config",
                               str(daemon.workdir / "crictl.yaml"), "logs", "-f", cid],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert follow.stdout is not None
        lines = [follow.stdout.readline() for _ in range(3)]
        assert all(line.startswith("line") for line in lines), lines
        ok(crictl(daemon, "stop", "-t", "1", cid))
        assert follow.wait(30) == 0  # following ends when the container does
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
