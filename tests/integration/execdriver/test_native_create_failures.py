"""A native create that fails leaves nothing behind: no container cgroup in any hierarchy,
no process, no record; and the reason is the container's own, not a bare "failed"."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import EngineError
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
