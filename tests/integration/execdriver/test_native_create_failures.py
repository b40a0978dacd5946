"""A native create that fails leaves nothing behind: no container cgroup in any hierarchy,
no process, no record; and the reason is the container's own, not a bare "failed"."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from engine.errors import EngineError
from engine.execdriver import cgroup_setup
from engine.execdriver.base import Stdio
from engine.execdriver.native import NativeDriver
from engine.execdriver.spec import InitSpec
from engine.runtime import build
from engine.runtime.api import Runtime
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs
from tests.integration.runtime.fixtures import rootfs, runtime, runtime_env, sandbox_config

pytestmark = pytest.mark.integration
__all__ = ["rootfs", "runtime", "runtime_env"]  # fixtures


def _children(runtime: Runtime, pod_cgroup: str) -> list[str]:
    out = []
    for d in runtime.ctx.cgroups.cgroup_dirs(pod_cgroup):
        if d.is_dir():
            out += [e.name for e in os.scandir(d) if e.is_dir()]
    return out


@pytest.mark.parametrize("command,reason", [
    (("no-such-binary",), "not found"),
    (("/bin/sh",), "working directory"),
])
def test_failed_create_leaves_no_cgroup(runtime: Runtime, rootfs: Path,
                                        command: tuple[str, ...], reason: str) -> None:
    sid = runtime.run_sandbox(sandbox_config("native"))
    pod_cgroup = runtime.sandbox_status(sid).record.cgroup_path
    (rootfs / "file").write_text("")
    workdir = "/file/below" if reason == "working directory" else ""
    config = ContainerConfig(name="c", command=command, working_dir=workdir)
    with pytest.raises(EngineError, match=reason):
        runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                 image=ImageConfig())
    assert runtime.list_containers(sid) == []
    assert _children(runtime, pod_cgroup) == []
    assert runtime.ctx.cgroups.procs(pod_cgroup) == []


def test_a_slow_monitor_still_gets_the_tty(runtime: Runtime, rootfs: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    """The init sends its console (a pty master, over the socket) right after the pid: a
    monitor that reads late gets both in one read and must keep the fd (it used to close
    it and fail with "made no TTY" under load). This process plays the monitor."""
    sid = runtime.run_sandbox(sandbox_config("native"))
    sandbox = runtime.sandbox_status(sid).record
    cid = "f" * 64
    spec = build.init_spec(cid, sandbox=build.SandboxFacts(
        id=sid, dir=str(runtime.ctx.store.sandbox_dir(sid)), config=sandbox.config,
        cgroup_path=sandbox.cgroup_path), config=ContainerConfig(
            name="tty", command=("/bin/sleep", "600"), tty=True),
        image=ImageConfig(), rootfs=str(rootfs), image_volumes={})
    prepare = cgroup_setup.prepare

    def slow(s: InitSpec) -> None:
        prepare(s)
        time.sleep(0.5)  # the init reports its pid and console meanwhile

    monkeypatch.setattr(cgroup_setup, "prepare", slow)
    null = os.open(os.devnull, os.O_RDWR)
    driver = NativeDriver()
    try:
        created = driver.create(spec, bundle=tmp_path, stdio=Stdio(null, null, null),
                                timeout=30)
    finally:
        os.close(null)
    try:
        assert created.console >= 0
        assert os.isatty(created.console)
    finally:
        os.kill(created.pid, signal.SIGKILL)
        if created.console >= 0:
            os.close(created.console)
        driver.delete(spec, bundle=tmp_path)
