"""The runtime's in-memory index against real containers: what it answers equals what a
fresh Runtime reads from disk, and exits and monitor deaths show without a disk walk."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from engine.runtime.api import ContainerInfo, Runtime, SandboxInfo
from engine.runtime.context import RuntimeOptions
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs
from engine.runtime.status import SandboxStatus, Status
from engine.shim import protocol as P
from tests.harness.prereq import need_root
from tests.integration.runtime.fixtures import rootfs, runtime, runtime_env, sandbox_config

pytestmark = pytest.mark.integration
__all__ = ["rootfs", "runtime", "runtime_env"]


def create(rt: Runtime, sid: str, rootfs: Path, script: str) -> str:
    config = ContainerConfig(name=f"c{time.monotonic_ns()}",
                             command=("/bin/sh", "-c", script))
    return rt.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                               image=ImageConfig())


def views(rt: Runtime) -> tuple[list[SandboxInfo], list[ContainerInfo]]:
    return rt.list_sandboxes(), rt.list_containers()


def from_disk(options: RuntimeOptions) -> tuple[list[SandboxInfo], list[ContainerInfo]]:
    fresh = Runtime(options, recover=False)
    try:
        return views(fresh)
    finally:
        fresh.close()


def wait_for(rt: Runtime, cid: str, status: Status, *, within: float) -> float:
    """Seconds until container_status (no wait_container) shows `status`."""
    t0 = time.monotonic()
    while rt.container_status(cid).state.status is not status:
        assert time.monotonic() - t0 < within, f"{cid} not {status.value} within {within}s"
        time.sleep(0.002)
    return time.monotonic() - t0


def test_index_equals_disk_through_a_containers_life(
        runtime: Runtime, runtime_env: tuple[RuntimeOptions, list[Runtime]],
        rootfs: Path) -> None:
    need_root()
    options = runtime_env[0]
    sid = runtime.run_sandbox(sandbox_config("native"))
    assert views(runtime) == from_disk(options)
    long = create(runtime, sid, rootfs, "exec sleep 600")
    # it exits when told (not after a guessed time that could fall between the two reads
    # compared below)
    short = create(runtime, sid, rootfs, "until [ -e /exit-now ]; do sleep 0.02; done; exit 7")
    assert views(runtime) == from_disk(options)
    runtime.start_container(long)
    runtime.start_container(short)
    assert runtime.container_status(long).state.status is Status.RUNNING
    assert views(runtime) == from_disk(options)
    (rootfs / "exit-now").touch()
    wait_for(runtime, short, Status.EXITED, within=60)
    assert runtime.container_status(short).state.exit_code == 7
    assert views(runtime) == from_disk(options)
    runtime.stop_container(long, timeout=0)
    runtime.remove_container(short)
    assert views(runtime) == from_disk(options)
    runtime.stop_sandbox(sid)
    assert runtime.sandbox_status(sid).status is SandboxStatus.NOTREADY
    assert views(runtime) == from_disk(options)
    runtime.remove_sandbox(sid)
    assert views(runtime) == from_disk(options) == ([], [])


def test_an_exit_shows_in_status_within_a_second(runtime: Runtime, rootfs: Path) -> None:
    need_root()
    sid = runtime.run_sandbox(sandbox_config("native"))
    cid = create(runtime, sid, rootfs, "exec sleep 600")
    runtime.start_container(cid)
    assert runtime.container_status(cid).state.status is Status.RUNNING
    pid = runtime.container_status(cid).state.pid
    os.kill(pid, signal.SIGKILL)
    assert wait_for(runtime, cid, Status.EXITED, within=1.0) < 1.0
    assert runtime.container_status(cid).state.exit_code == 137
    assert [i.state.status for i in runtime.list_containers(sid)] == [Status.EXITED]


def test_a_dead_monitor_shows_within_a_second(runtime: Runtime, rootfs: Path) -> None:
    need_root()
    sid = runtime.run_sandbox(sandbox_config("native"))
    cid = create(runtime, sid, rootfs, "exec sleep 600")
    runtime.start_container(cid)
    assert runtime.sandbox_status(sid).monitor_alive
    monitor = int((runtime.ctx.store.sandbox_dir(sid) / P.PIDFILE).read_text())
    os.kill(monitor, signal.SIGKILL)
    t0 = time.monotonic()
    while runtime.sandbox_status(sid).monitor_alive:
        assert time.monotonic() - t0 < 1.0, "the monitor's death was not seen within 1s"
        time.sleep(0.002)
    state = runtime.container_status(cid).state
    assert (state.status, state.reason) == (Status.EXITED, "MonitorDied")
    assert runtime.sandbox_status(sid).status is SandboxStatus.NOTREADY


def test_a_restarted_runtime_recovers_the_index(
        runtime: Runtime, runtime_env: tuple[RuntimeOptions, list[Runtime]],
        rootfs: Path) -> None:
    need_root()
    sid = runtime.run_sandbox(sandbox_config("native"))
    cid = create(runtime, sid, rootfs, "exec sleep 600")
    runtime.start_container(cid)
    before = views(runtime)
    runtime.close()  # the old daemon goes; its monitors and containers stay
    again = Runtime(runtime_env[0])
    runtime_env[1].append(again)
    assert views(again) == before
    pid = again.container_status(cid).state.pid
    os.kill(pid, signal.SIGKILL)  # an exit after the restart is seen too
    wait_for(again, cid, Status.EXITED, within=60)
