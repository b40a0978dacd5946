"""Faults: OOM, a daemon killed with -9, a monitor killed with -9, a full log disk."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.cgroups.base import Resources
from engine.execdriver.helper import SOURCE_ROOT
from engine.runtime.api import Runtime
from engine.runtime.context import RuntimeOptions
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs
from engine.runtime.status import Status
from engine.shim import protocol as P
from engine.sys import linux
from tests.integration.runtime.fixtures import (
    DRIVERS,
    need_cgroup_v1,
    rootfs,
    run_to_exit,
    runtime,
    runtime_env,
    sandbox_config,
)

pytestmark = pytest.mark.integration
__all__ = ["rootfs", "runtime", "runtime_env"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("handler", DRIVERS)
def test_memory_limit_too_low_is_oomkilled(runtime: Runtime, rootfs: Path, handler: str) -> None:
    need_cgroup_v1()
    sid = runtime.run_sandbox(sandbox_config(handler))
    state, _ = run_to_exit(runtime, sid, rootfs, "exec tail /dev/zero",
                           resources=Resources(memory_limit=16 * 1024 * 1024))
    assert (state.status, state.exit_code, state.reason) == (Status.EXITED, 137, "OOMKilled")


def test_kill9_daemon_keeps_containers_and_recovers(
        runtime_env: tuple[RuntimeOptions, list[Runtime]], rootfs: Path) -> None:
    options = runtime_env[0]
    count = 20
    script = textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        from engine.runtime.api import Runtime
        from engine.runtime.context import RuntimeOptions
        from engine.runtime.spec import *
        rt = Runtime(RuntimeOptions(run_root=Path({str(options.run_root)!r}),
                                    cgroup_root={options.cgroup_root!r}))
        sid = rt.run_sandbox(SandboxConfig(name="p", namespace="ns", uid="u"))
        ids = []
        for i in range({count}):
            cid = rt.create_container(sid, ContainerConfig(name=f"c{{i}}",
                command=("/bin/sleep", "600")), rootfs=Rootfs(directory={str(rootfs)!r}),
                image=ImageConfig())
            rt.start_container(cid)
            ids.append(cid)
        print(json.dumps({{"sid": sid, "ids": ids}}), flush=True)
        time.sleep(600)
    """)
    daemon = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              cwd=SOURCE_ROOT, text=True)
    try:
        assert daemon.stdout is not None
        made = json.loads(daemon.stdout.readline())
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
    rt = Runtime(options)  # a fresh daemon: recovers from disk
    runtime_env[1].append(rt)
    infos = rt.list_containers(made["sid"])
    assert sorted(i.record.id for i in infos) == sorted(made["ids"])
    for info in infos:
        assert info.state.status is Status.RUNNING
        assert _alive(info.state.pid)
    assert rt.recover() == []
    assert rt.sandbox_status(made["sid"]).monitor_alive
    victim = made["ids"][0]
    rt.stop_container(victim, timeout=0)
    assert rt.container_status(victim).state.exit_code == 137


def test_kill9_monitor_reports_exit_and_leaks_nothing(runtime: Runtime, rootfs: Path) -> None:
    sid = runtime.run_sandbox(sandbox_config("native"))
    config = ContainerConfig(name="c", command=("/bin/sleep", "600"))
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=ImageConfig())
    runtime.start_container(cid)
    pid = runtime.container_status(cid).state.pid
    sandbox_dir = runtime.ctx.store.sandbox_dir(sid)
    monitor = int((sandbox_dir / P.PIDFILE).read_text())
    os.kill(monitor, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while (_alive(monitor) or _alive(pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid)  # the container died with its monitor (PDEATHSIG), on its own
    state = runtime.container_status(cid).state
    assert (state.status, state.reason, state.exit_code) == (Status.EXITED, "MonitorDied", 137)
    # The read answers at once; the cgroup's kill and removal finish on a thread
    # (engine/runtime/reaping.py) and every read meanwhile, and after, says the same.
    cgroup = runtime.container_status(cid).record.spec.cgroup_path
    deadline = time.monotonic() + 60
    while runtime.ctx.cgroups.exists(cgroup) and time.monotonic() < deadline:
        assert runtime.container_status(cid).state == state
        time.sleep(0.02)
    assert not runtime.ctx.cgroups.exists(cgroup)
    assert runtime.ctx.store.state(runtime.container_record(cid)) == state  # persisted as told
    assert not runtime.sandbox_status(sid).monitor_alive
    runtime.remove_sandbox(sid)
    assert not sandbox_dir.exists()
    with open("/proc/self/mountinfo") as f:
        assert sid not in f.read()


def test_full_log_disk_does_not_block_the_container(runtime: Runtime, rootfs: Path,
                                                    tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    linux.mount("tmpfs", str(logs), "tmpfs", 0, "size=64k")
    try:
        sid = runtime.run_sandbox(sandbox_config("native", log_directory=str(logs)))
        state, _ = run_to_exit(runtime, sid, rootfs,
                               "seq 1 100000; echo done >&2", log_path="c/0.log")
        assert (state.exit_code, state.reason) == (0, "Completed")
        assert "dropped" in state.message
        assert (logs / "c" / "0.log").stat().st_size > 0
        runtime.remove_sandbox(sid)
    finally:
        linux.umount2(str(logs), linux.MNT_DETACH)
