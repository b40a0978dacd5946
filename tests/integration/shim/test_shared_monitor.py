"""Several pods in one monitor process (RuntimeOptions.pods_per_monitor, engine.shim.monitor):
adoption up to K, a pod's shutdown alone, kill -9 of a shared process, engined restarts,
and no fd of one pod reaching another pod's containers."""
from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest

from engine.runtime.api import Runtime
from engine.runtime.context import RuntimeOptions
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs
from engine.runtime.status import Status
from engine.shim import protocol as P
from engine.shim.client import MonitorClient, monitor_alive
from engine.shim.spawner import stop_zygote
from tests.integration.runtime.fixtures import (
    DRIVERS,
    rootfs,
    run_to_exit,
    runtime_env,
    sandbox_config,
)
from tests.integration.shim.test_zygote import alive, wait_gone
from tests.integration.shim.test_zygote_runtime import fd_targets, monitor_pid, sleeper

pytestmark = pytest.mark.integration
__all__ = ["rootfs", "runtime_env"]
K = 3


def shared(runtime_env: tuple[RuntimeOptions, list[Runtime]], k: int = K) -> Runtime:
    rt = Runtime(dataclasses.replace(runtime_env[0], pods_per_monitor=k))
    runtime_env[1].append(rt)
    return rt


def wait_for(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_k_pods_share_a_process_and_the_next_gets_a_new_one(
        runtime_env: tuple[RuntimeOptions, list[Runtime]]) -> None:
    rt = shared(runtime_env)
    sids = [rt.run_sandbox(sandbox_config()) for _ in range(K + 1)]
    pids = [monitor_pid(rt, sid) for sid in sids]
    assert len(set(pids[:K])) == 1 and pids[K] != pids[0], pids
    dirs = [rt.ctx.store.sandbox_dir(sid) for sid in sids]
    hosted = MonitorClient(dirs[0]).call("ping")["pods"]
    assert sorted(hosted) == sorted(str(d) for d in dirs[:K])
    for d in dirs:  # every pod keeps its own socket, pidfile and namespaces
        assert (d / P.SOCKET).exists() and monitor_alive(d) and (d / "ns" / "net").exists()
    assert all(rt.sandbox_status(sid).monitor_alive for sid in sids)
    note = (dirs[1] / "monitor.log").read_text()
    assert f"served by monitor process {pids[0]}, which logs to {dirs[0]}/monitor.log" in note


def test_k_1_is_a_process_per_pod(runtime_env: tuple[RuntimeOptions, list[Runtime]]) -> None:
    rt = shared(runtime_env, 1)
    sids = [rt.run_sandbox(sandbox_config()) for _ in range(3)]
    assert len({monitor_pid(rt, sid) for sid in sids}) == 3


def test_a_full_process_is_not_refilled_after_one_of_its_pods_goes(
        runtime_env: tuple[RuntimeOptions, list[Runtime]]) -> None:
    rt = shared(runtime_env, 2)
    a, b = rt.run_sandbox(sandbox_config()), rt.run_sandbox(sandbox_config())
    first = monitor_pid(rt, a)
    rt.remove_sandbox(a)
    assert alive(first) and monitor_pid(rt, b) == first
    c = rt.run_sandbox(sandbox_config())
    assert monitor_pid(rt, c) != first  # it drains: hosted 2 of 2
    rt.remove_sandbox(b)
    assert wait_gone(first)  # its last pod gone: the process exits


def test_stopping_one_pod_leaves_the_others_running_and_attached(
        runtime_env: tuple[RuntimeOptions, list[Runtime]], rootfs: Path) -> None:
    rt = shared(runtime_env)
    a, b = rt.run_sandbox(sandbox_config()), rt.run_sandbox(sandbox_config())
    pid = monitor_pid(rt, a)
    assert monitor_pid(rt, b) == pid
    ca = sleeper(rt, a, rootfs)
    cb = rt.create_container(b, ContainerConfig(name="cat", command=("/bin/cat",), stdin=True),
                             rootfs=Rootfs(directory=str(rootfs)), image=ImageConfig())
    rt.start_container(cb)
    attached = rt.attach(cb)
    rt.stop_sandbox(a)
    assert rt.container_status(ca).state.status is Status.EXITED
    assert not monitor_alive(rt.ctx.store.sandbox_dir(a))
    assert not (rt.ctx.store.sandbox_dir(a) / P.SOCKET).exists()
    assert alive(pid) and monitor_pid(rt, b) == pid
    assert rt.container_status(cb).state.status is Status.RUNNING
    assert rt.exec_sync(cb, ("/bin/echo", "still"), timeout=30).stdout == b"still\n"
    state, out = run_to_exit(rt, b, rootfs, "echo logged")
    assert (state.exit_code, out) == (0, "logged")
    attached.sock.settimeout(20)
    attached.write_stdin(b"echoed\n")  # the attach made before the stop still works
    assert attached.read() == ("stdout", b"echoed\n")
    attached.close()
    rt.remove_sandbox(a)
    assert alive(pid)
    assert rt.container_status(cb).state.status is Status.RUNNING


@pytest.mark.parametrize("handler", DRIVERS)
def test_kill_9_of_a_shared_monitor_ends_every_hosted_pod(
        runtime_env: tuple[RuntimeOptions, list[Runtime]], rootfs: Path, handler: str) -> None:
    rt = shared(runtime_env)
    sids = [rt.run_sandbox(sandbox_config(handler)) for _ in range(K)]
    pid = monitor_pid(rt, sids[0])
    assert {monitor_pid(rt, sid) for sid in sids} == {pid}
    cids = [sleeper(rt, sid, rootfs) for sid in sids]
    inits = [rt.container_status(cid).state.pid for cid in cids]
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    for sid, cid in zip(sids, cids, strict=True):
        state = rt.container_status(cid).state
        assert (state.status, state.reason, state.exit_code) == (
            Status.EXITED, "MonitorDied", 137), state
        assert not rt.sandbox_status(sid).monitor_alive
    for init in inits:  # native: PDEATHSIG; runc/crun: killed through the cgroup
        assert wait_gone(init), init
    for sid in sids:
        rt.remove_sandbox(sid)  # runtime_env checks: no mount, cgroup or process left


def test_after_an_engined_restart_new_pods_never_join_old_monitors(
        runtime_env: tuple[RuntimeOptions, list[Runtime]]) -> None:
    before = shared(runtime_env)
    old = before.run_sandbox(sandbox_config())
    old_pid = monitor_pid(before, old)
    stop_zygote(runtime_env[0].run_root)  # engined goes; its monitors stay
    after = shared(runtime_env)
    assert after.sandbox_status(old).monitor_alive  # recovered, still served
    new = [after.run_sandbox(sandbox_config()) for _ in range(2)]
    pids = {monitor_pid(after, sid) for sid in new}
    assert len(pids) == 1 and old_pid not in pids  # the new ones share a new process
    assert MonitorClient(after.ctx.store.sandbox_dir(old)).call("ping")["pods"] == [
        str(after.ctx.store.sandbox_dir(old))]


def test_no_fd_of_one_pod_reaches_another_pods_containers(
        runtime_env: tuple[RuntimeOptions, list[Runtime]], rootfs: Path) -> None:
    rt = shared(runtime_env)
    a, b = rt.run_sandbox(sandbox_config()), rt.run_sandbox(sandbox_config())
    monitor = monitor_pid(rt, a)
    assert monitor_pid(rt, b) == monitor
    ca = [sleeper(rt, a, rootfs), sleeper(rt, a, rootfs, stdin=True, tty=True)]
    cb = [sleeper(rt, b, rootfs, stdin=True), sleeper(rt, b, rootfs, tty=True)]
    session = rt.exec_stream(ca[0], ("/bin/cat",), tty=False)  # a live session of pod a
    held = {t for fd, t in fd_targets(monitor).items() if fd > 2}
    by_container = {cid: fd_targets(rt.container_status(cid).state.pid) for cid in ca + cb}
    for cid, fds in by_container.items():
        assert sorted(fds) == [0, 1, 2], (cid, fds)  # the allowlist: stdio only
        assert all(t.startswith(("pipe:", "/dev/null", "/dev/pts/")) for t in fds.values())
    pipes_a = {t for cid in ca for t in by_container[cid].values() if t.startswith("pipe:")}
    pipes_b = {t for cid in cb for t in by_container[cid].values() if t.startswith("pipe:")}
    assert pipes_a and pipes_b and not pipes_a & pipes_b
    assert pipes_a & held and pipes_b & held  # the monitor holds the other ends of both
    exec_b = rt.exec_sync(cb[0], ("/bin/ls", "/proc/self/fd"), timeout=30)
    assert set(exec_b.stdout.split()) <= {b"0", b"1", b"2", b"3"}  # 3: ls's directory
    session.kill()
    session.wait(30)
    session.close()
