"""The monitor zygote under the runtime: real pods (native, runc, crun containers, exec,
attach, logs), the modules a monitor uses, the fds a monitor and a container hold, a dead
zygote found by RunPodSandbox, engined's death."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.execdriver.helper import SOURCE_ROOT
from engine.runtime.api import Runtime
from engine.runtime.context import RuntimeOptions
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs
from engine.runtime.status import Status
from engine.shim import protocol as P
from engine.shim.client import MonitorClient
from engine.shim.spawner import spawner_for
from tests.integration.runtime.fixtures import (
    DRIVERS,
    rootfs,
    run_to_exit,
    runtime,
    runtime_env,
    sandbox_config,
)
from tests.integration.shim.test_zygote import alive, wait_gone

pytestmark = pytest.mark.integration
__all__ = ["rootfs", "runtime", "runtime_env"]


def sleeper(rt: Runtime, sid: str, rootfs: Path, **kw: object) -> str:
    config = ContainerConfig(name=f"s{len(rt.list_containers(sid))}",
                             command=("/bin/sleep", "600"), **kw)  # type: ignore[arg-type]
    cid = rt.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                              image=ImageConfig())
    rt.start_container(cid)
    pid = rt.container_status(cid).state.pid
    deadline = time.monotonic() + 60  # runc/crun start returns before their init exec'd
    while not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/bin/sleep"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return cid


def monitor_pid(rt: Runtime, sid: str) -> int:
    return int((rt.ctx.store.sandbox_dir(sid) / P.PIDFILE).read_text())


@pytest.mark.parametrize("handler", DRIVERS)
def test_no_module_is_imported_after_the_fork(runtime: Runtime, rootfs: Path,
                                              handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler, sysctls={"net.ipv4.ip_forward": "1"}))
    d = runtime.ctx.store.sandbox_dir(sid)
    before = set(MonitorClient(d).call("modules")["modules"])
    state, out = run_to_exit(runtime, sid, rootfs, "echo hi; echo err >&2; exit 3")
    assert (state.exit_code, out) == (3, "hi\nerr")
    cid = sleeper(runtime, sid, rootfs, stdin=True, tty=True)
    assert runtime.exec_sync(cid, ("/bin/echo", "x"), timeout=30).stdout == b"x\n"
    session = runtime.exec_stream(cid, ("/bin/cat",), tty=True)
    session.resize(80, 24)
    session.kill()
    session.wait(30)
    session.close()
    attached = runtime.attach(cid)
    attached.resize(100, 30)
    attached.close()
    runtime.reopen_container_log(cid)
    runtime.stop_container(cid, timeout=1)
    after = set(MonitorClient(d).call("modules")["modules"])
    zygote = set(spawner_for(runtime.ctx.options.run_root, owner=runtime.ctx)
                 .call("modules")["modules"])
    assert after == before
    assert after <= zygote | {"__main__"}, sorted(after - zygote)


def fd_targets(pid: int) -> dict[int, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
    return out


@pytest.mark.parametrize("handler", DRIVERS)
def test_no_fd_of_the_zygote_reaches_a_monitor_or_a_container(
        runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    cid = sleeper(runtime, sid, rootfs)
    zygote = spawner_for(runtime.ctx.options.run_root, owner=runtime.ctx).pid
    theirs = {t for fd, t in fd_targets(zygote).items() if fd > 2}
    monitor = fd_targets(monitor_pid(runtime, sid))
    assert not theirs & set(monitor.values()), monitor
    container = fd_targets(runtime.container_status(cid).state.pid)
    assert sorted(container) == [0, 1, 2], container
    assert not theirs & set(container.values())
    assert all(t.startswith(("pipe:", "/dev/null")) for t in container.values()), container


def test_run_sandbox_restarts_a_dead_zygote(
        runtime_env: tuple[RuntimeOptions, list[Runtime]], rootfs: Path) -> None:
    # one pod per monitor: the second sandbox needs the zygote (no process to adopt it)
    runtime = Runtime(dataclasses.replace(runtime_env[0], pods_per_monitor=1))
    runtime_env[1].append(runtime)
    first = runtime.run_sandbox(sandbox_config())
    cid = sleeper(runtime, first, rootfs)
    spawner = spawner_for(runtime.ctx.options.run_root, owner=runtime.ctx)
    zygote = spawner.pid
    os.kill(zygote, signal.SIGKILL)
    assert wait_gone(zygote)
    second = runtime.run_sandbox(sandbox_config())
    assert spawner.pid not in (0, zygote)
    assert runtime.sandbox_status(second).monitor_alive
    assert runtime.container_status(cid).state.status is Status.RUNNING  # not affected
    state, out = run_to_exit(runtime, second, rootfs, "echo fine")
    assert (state.exit_code, out) == (0, "fine")


def test_engined_killed_takes_the_zygote_not_the_monitors(
        runtime_env: tuple[RuntimeOptions, list[Runtime]], rootfs: Path) -> None:
    options = runtime_env[0]
    script = textwrap.dedent(f"""
        import json, time
        from pathlib import Path
        from engine.runtime.api import Runtime
        from engine.runtime.context import RuntimeOptions
        from engine.runtime.spec import *
        from engine.shim.spawner import spawner_for
        rt = Runtime(RuntimeOptions(run_root=Path({str(options.run_root)!r}),
                                    cgroup_root={options.cgroup_root!r}))
        sids = [rt.run_sandbox(SandboxConfig(name=f"p{{i}}", namespace="ns", uid=f"u{{i}}"))
                for i in range(3)]
        cid = rt.create_container(sids[0], ContainerConfig(name="c",
            command=("/bin/sleep", "600")), rootfs=Rootfs(directory={str(rootfs)!r}),
            image=ImageConfig())
        rt.start_container(cid)
        zygote = spawner_for(rt.ctx.options.run_root, owner=rt.ctx).pid
        print(json.dumps({{"sids": sids, "cid": cid, "zygote": zygote}}), flush=True)
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
    assert wait_gone(made["zygote"])
    rt = Runtime(options)
    runtime_env[1].append(rt)
    for sid in made["sids"]:
        assert rt.sandbox_status(sid).monitor_alive
    state = rt.container_status(made["cid"]).state
    assert state.status is Status.RUNNING and alive(state.pid)
    fresh = rt.run_sandbox(sandbox_config())  # a fresh zygote on the same run root
    assert rt.sandbox_status(fresh).monitor_alive
