"""The CNI agent and the thin plugin executables (shim): the wire, fallbacks, failures.
No root needed: VERSION goes through the same path as ADD (see the integration tests)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.networkdriver.plugins import agent_wire, install, invoke, shim, spec
from tests.integration.networkdriver import agent_harness

REPO = Path(__file__).resolve().parents[3]
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KPY_CNI_DEBUG": "1"}


def run(path: Path, command: str = "VERSION", stdin: bytes = b"",
        **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(path)], input=stdin, env={**ENV, "CNI_COMMAND": command, **env},
                          capture_output=True, timeout=60, check=False)


@pytest.fixture()
def sock(tmp_path: Path) -> Path:
    return agent_harness.socket_in(tmp_path)


@pytest.fixture()
def plugin(tmp_path: Path, sock: Path) -> Path:
    [bridge, *_] = agent_harness.install_with_agent(tmp_path / "bin", sock)
    return bridge


@pytest.fixture()
def served(sock: Path) -> Iterator[agent_harness.ThreadAgent]:
    a = agent_harness.ThreadAgent(sock)
    try:
        yield a
    finally:
        a.close()


def test_the_shim_imports_nothing_beyond_a_bare_start() -> None:
    code = (f"import sys; before = set(sys.modules); sys.path[:0] = [{str(REPO)!r}]\n"
            "from engine.networkdriver.plugins import shim\n"
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert set(out) <= {"engine", "engine.networkdriver", "engine.networkdriver.plugins",
                        "engine.networkdriver.plugins.shim", "_socket"}, out


def test_the_engine_still_finds_the_plugin_module_behind_the_shim(plugin: Path) -> None:
    assert invoke.our_module(str(plugin)) == "engine.networkdriver.plugins.bridge"


def test_a_request_round_trips_with_the_netns_fd_and_no_other(tmp_path: Path) -> None:
    a, b = socket.socketpair()
    other = os.open(tmp_path, os.O_RDONLY)
    netns = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        request = shim.frame(b"engine.networkdriver.plugins.bridge", b"/src",
                             shim.env_block([(b"CNI_COMMAND", b"ADD"), (b"A", b"x=y")]),
                             b"{}" * 50000)
        rights = (netns.to_bytes(4, sys.byteorder) + other.to_bytes(4, sys.byteorder))
        sender = threading.Thread(target=lambda: (
            a.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])))
        sender.start()
        req = agent_wire.read_request(b)
        sender.join()
    finally:
        os.close(other)
        os.close(netns)
        a.close()
        b.close()
    assert (req.module, req.root, req.stdin) == ("engine.networkdriver.plugins.bridge", "/src",
                                                 b"{}" * 50000)
    assert req.env == {"CNI_COMMAND": "ADD", "A": "x=y"}
    assert req.netns_fd is not None
    assert os.readlink(f"/proc/self/fd/{req.netns_fd}").startswith("net:[")
    os.close(req.netns_fd)


def test_a_malformed_request_gets_a_cni_error(sock: Path,
                                              served: agent_harness.ThreadAgent) -> None:
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(str(sock))
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        c.shutdown(socket.SHUT_WR)
        data = b"".join(iter(lambda: c.recv(4096), b""))
    assert data[:2] == shim.REPLY_RESULT + b"\x01"
    assert json.loads(data[10:])["code"] == spec.ERR_DECODE


def test_the_agent_serves_the_executable(plugin: Path,
                                         served: agent_harness.ThreadAgent) -> None:
    proc = run(plugin)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["supportedVersions"] == list(spec.SUPPORTED_VERSIONS)
    assert served.agent.served == 1
    assert b"kpy-cni-shim" not in proc.stderr  # no fallback said
    # the env var turns the agent off for one invocation
    off = run(plugin, KPY_CNI_AGENT_SOCKET="off")
    assert off.returncode == 0 and off.stdout == proc.stdout
    assert served.agent.served == 1


def test_without_an_agent_the_executable_runs_the_plugin_itself(plugin: Path) -> None:
    stdin = b'{"cniVersion": "1.0.0", "name": "n", "type": "kpy-bridge"}'
    proc = run(plugin, "ADD", stdin, CNI_CONTAINERID="c", CNI_IFNAME="eth0", CNI_NETNS="/x",
               CNI_PATH="/nonexistent")
    assert b"no agent at" in proc.stderr
    assert proc.returncode == 1
    # the stdin the shim read reached the plugin: it complained about the config's content
    assert json.loads(proc.stdout) == {"cniVersion": "1.0.0", "code": spec.ERR_INVALID_CONFIG,
                                       "msg": "the bridge plugin needs an ipam section"}


def test_stale_code_makes_the_shim_fall_back_and_the_agent_exit(
        plugin: Path, sock: Path, served: agent_harness.ThreadAgent) -> None:
    path = next(iter(served.agent.stamp))
    ino, size, mtime = served.agent.stamp[path]
    served.agent.stamp[path] = (ino, size, mtime - 1)  # as if the file changed since
    proc = run(plugin)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["supportedVersions"]
    assert b"agent answered S" in proc.stderr
    served.thread.join(30)
    assert not served.thread.is_alive() and not sock.exists()
    assert served.agent.served == 0


def test_the_agent_exits_when_idle(sock: Path) -> None:
    a = agent_harness.ThreadAgent(sock, idle_timeout=0.1)
    a.thread.join(30)
    assert not a.thread.is_alive() and not sock.exists()


def test_an_agent_lost_mid_request_is_try_again_later(plugin: Path, sock: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    listener.listen()

    def dies_after_reading() -> None:
        conn, _ = listener.accept()
        conn.recv(16)
        conn.close()

    fake = threading.Thread(target=dies_after_reading)
    fake.start()
    try:
        proc = run(plugin, "ADD", b'{"cniVersion":"1.0.0","name":"n"}', CNI_CONTAINERID="c",
                   CNI_IFNAME="eth0", CNI_NETNS="/x", CNI_PATH="/x")
    finally:
        fake.join()
        listener.close()
    assert proc.returncode == 1
    err = json.loads(proc.stdout)
    assert err["code"] == spec.ERR_TRY_AGAIN_LATER and err["cniVersion"] == "1.0.0"


def test_an_agent_killed_mid_request_is_try_again_later(plugin: Path, sock: Path) -> None:
    agent = agent_harness.start_process(sock)
    try:
        agent.send_signal(signal.SIGSTOP)
        shim_proc = subprocess.Popen([str(plugin)], env={**ENV, "CNI_COMMAND": "VERSION"},
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{shim_proc.pid}/wchan").read_text() != "unix_stream_read_generic":
            assert time.monotonic() < deadline and shim_proc.poll() is None
            time.sleep(0.01)
        agent.kill()
        out, err = shim_proc.communicate(timeout=30)
    finally:
        agent_harness.stop_process(agent)
    assert shim_proc.returncode == 1, err
    assert json.loads(out)["code"] == spec.ERR_TRY_AGAIN_LATER


def test_concurrent_shims_start_one_agent(tmp_path: Path, sock: Path) -> None:
    [bridge, *_] = agent_harness.install_with_agent(tmp_path / "auto", sock, autostart=True)
    try:
        procs = [subprocess.Popen([str(bridge)], env={**ENV, "CNI_COMMAND": "VERSION"},
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for _ in range(12)]
        outs = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0] * len(procs)
        assert all(json.loads(out)["supportedVersions"] for out, _ in outs)
        started = sum(err.count(b"started an agent") for _, err in outs)
        assert started == 1
        pid = agent_harness_pid(sock)
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        again = run(bridge)
        assert again.returncode == 0 and b"kpy-cni-shim" not in again.stderr
        assert agent_harness_pid(sock) == pid
    finally:
        agent_harness.kill_autostarted(sock)
    assert agent_harness_pid(sock) is None


def agent_harness_pid(sock: Path) -> int | None:
    from engine.networkdriver.plugins import agent

    return agent.running_pid(str(sock))


def test_install_cli_writes_the_agent_settings(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "engine.networkdriver.plugins.install", "--bin-dir",
                    str(tmp_path), "--agent-socket", "/run/x/a.sock", "--agent-autostart"],
                   check=True, capture_output=True, cwd=REPO)
    text = (tmp_path / "kpy-host-local").read_text()
    assert ("shim.forward('engine.networkdriver.plugins.hostlocal', '/run/x/a.sock', "
            "autostart=True)") in text
    assert install.wrapper("m").count("shim.forward('m', None, autostart=False)") == 1


def test_cni_version_is_found_without_a_parser() -> None:
    assert shim.cni_version(b'{"name": "x", "cniVersion" : "0.4.0"}') == "0.4.0"
    assert shim.cni_version(b'{"cniVersion": "1.0.0\\"; rm"}') == "1.1.0"
    assert shim.cni_version(b"") == "1.1.0"


def test_status_and_stop_from_the_command_line(sock: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from engine.networkdriver.plugins import agent

    proc = agent_harness.start_process(sock)
    try:
        agent.main(["--socket", str(sock), "--status"])
        status = json.loads(capsys.readouterr().out)
        assert status["pid"] == proc.pid and status["served"] == 0 and status["rss_kib"] > 0
        agent.main(["--socket", str(sock), "--stop"])
        assert proc.wait(30) == 0  # --stop returned once the agent let its lock go
        assert not sock.exists()
    finally:
        agent_harness.stop_process(proc)


def test_a_large_config_reaches_the_agent_whole(plugin: Path,
                                                served: agent_harness.ThreadAgent) -> None:
    stdin = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "kpy-bridge",
                        "pad": "x" * (4 << 20)}).encode()
    proc = run(plugin, "ADD", stdin, CNI_CONTAINERID="c", CNI_IFNAME="eth0", CNI_NETNS="/x",
               CNI_PATH="/nonexistent")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["msg"] == "the bridge plugin needs an ipam section"
    assert served.agent.served == 1


def test_the_shims_own_error_is_valid_json(tmp_path: Path) -> None:
    sock = tmp_path / 'a"b\\c.sock'
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    listener.listen()
    def accept_and_close() -> None:
        conn, _ = listener.accept()
        conn.close()

    closer = threading.Thread(target=accept_and_close)
    closer.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-IS", "-c", f"import sys; sys.path[:0] = [{str(REPO)!r}]\n"
             "from engine.networkdriver.plugins import shim\n"
             f"shim.forward('engine.networkdriver.plugins.bridge', {str(sock)!r})"],
            input=b"", env={**ENV, "CNI_COMMAND": "VERSION"}, capture_output=True, timeout=60,
            check=False)
    finally:
        closer.join()
        listener.close()
    assert proc.returncode == 1
    err = json.loads(proc.stdout)
    assert err["code"] == spec.ERR_TRY_AGAIN_LATER and str(sock) in err["details"] + err["msg"]


def test_a_passed_netns_fd_stands_for_its_path_on_this_thread_only() -> None:
    from engine.networkdriver.plugins import setns

    passed = os.open("/proc/self/ns/net", os.O_RDONLY)
    seen: list[BaseException] = []

    def elsewhere() -> None:
        try:
            setns.open_netns("/nonexistent/netns")
        except spec.CNIError as exc:
            seen.append(exc)

    try:
        setns.pass_netns("/nonexistent/netns", passed)
        fd = setns.open_netns("/nonexistent/netns")
        try:
            assert os.fstat(fd).st_ino == os.fstat(passed).st_ino and fd != passed
        finally:
            os.close(fd)
        other = threading.Thread(target=elsewhere)
        other.start()
        other.join()
        assert [getattr(e, "code", None) for e in seen] == [spec.ERR_UNKNOWN_CONTAINER]
    finally:
        setns.pass_netns("", None)
        os.close(passed)
    with pytest.raises(spec.CNIError):
        setns.open_netns("/nonexistent/netns")


def test_a_bug_in_the_agent_is_a_cni_error(plugin: Path, served: agent_harness.ThreadAgent,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(req: agent_wire.AgentRequest) -> tuple[int, bytes]:
        raise RuntimeError("boom")

    monkeypatch.setattr(served.agent, "run", broken)
    proc = run(plugin)
    assert proc.returncode == 1
    err = json.loads(proc.stdout)
    assert err["code"] == spec.ERR_INTERNAL and err["details"] == "boom"
