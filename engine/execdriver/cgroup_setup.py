"""Creating and removing a container's cgroup when the driver itself does it (native, and
crun on hybrid hosts where crun refuses to manage cgroups)."""
from __future__ import annotations

from engine.cgroups.detect import manager
from engine.cgroups.v1 import CgroupV1
from engine.execdriver.spec import DEFAULT_DEVICE_RULES, InitSpec


def prepare(spec: InitSpec) -> None:
    if not spec.cgroup_path:
        return
    cgroups = manager()
    cgroups.create(spec.cgroup_path, spec.resources)
    if isinstance(cgroups, CgroupV1) and not spec.privileged:
        cgroups.restrict_devices(spec.cgroup_path, list(DEFAULT_DEVICE_RULES))


def join(spec: InitSpec, pid: int) -> None:
    if spec.cgroup_path:
        manager().join(spec.cgroup_path, pid)


def remove(spec: InitSpec) -> None:
    if spec.cgroup_path:
        cgroups = manager()
        if cgroups.exists(spec.cgroup_path):
            cgroups.destroy(spec.cgroup_path)
