"""cgroup v1: one hierarchy per controller under /sys/fs/cgroup/<controller>/."""
from __future__ import annotations

import os
from pathlib import Path

from engine.cgroups.base import (
    CgroupStats,
    Resources,
    check_path,
    kill_and_remove,
    mkdir,
    read_int,
    read_kv,
    read_text,
    remove_made,
    write,
)
from engine.errors import NotFound

CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer")


class CgroupV1:
    version = 1

    def __init__(self, root: Path = Path("/sys/fs/cgroup")) -> None:
        self.root = root
        self.controllers = [c for c in CONTROLLERS if (root / c).is_dir()]

    def _dir(self, controller: str, path: str) -> Path:
        return self.root / controller / check_path(path)

    def cgroup_dirs(self, path: str) -> list[Path]:
        return [self._dir(c, path) for c in self.controllers]

    def all_dirs(self, path: str) -> list[Path]:
        """The path in every mounted hierarchy (runc also creates it in name=systemd and in
        the hybrid unified tree); what destroy removes."""
        rel = check_path(path)
        with os.scandir(self.root) as it:
            hierarchies = sorted(e.path for e in it if e.is_dir(follow_symlinks=False))
        return [Path(h, rel) for h in hierarchies if os.path.isdir(os.path.join(h, rel))]

    def exists(self, path: str) -> bool:
        return any(d.is_dir() for d in self.cgroup_dirs(path))

    def create(self, path: str, resources: Resources) -> None:
        resources.validate()
        parts = check_path(path).split("/")
        made: list[Path] = []
        try:
            for controller in self.controllers:
                cur = self.root / controller
                for part in parts:
                    parent, cur = cur, cur / part
                    if mkdir(cur):
                        made.append(cur)
                    if controller == "cpuset":  # a new v1 cpuset starts empty: inherit
                        for f in ("cpuset.cpus", "cpuset.mems"):
                            if not read_text(cur / f).strip():
                                write(cur / f, read_text(parent / f).strip())
            self.update(path, resources)
        except BaseException:
            remove_made(made)
            raise

    def update(self, path: str, resources: Resources) -> None:
        resources.validate()
        if not self.exists(path):
            raise NotFound(f"cgroup {path} does not exist")
        cpu = self._dir("cpu", path)
        if resources.cpu_shares:
            write(cpu / "cpu.shares", str(resources.cpu_shares))
        if resources.cpu_period:
            write(cpu / "cpu.cfs_period_us", str(resources.cpu_period))
        if resources.cpu_quota:
            write(cpu / "cpu.cfs_quota_us", str(max(resources.cpu_quota, -1)))
        if resources.memory_limit:
            mem = self._dir("memory", path)
            write(mem / "memory.limit_in_bytes", str(resources.memory_limit))
        if resources.pids_limit and "pids" in self.controllers:
            write(self._dir("pids", path) / "pids.max", str(resources.pids_limit))
        cpuset = self._dir("cpuset", path)
        if resources.cpuset_cpus:
            write(cpuset / "cpuset.cpus", resources.cpuset_cpus)
        if resources.cpuset_mems:
            write(cpuset / "cpuset.mems", resources.cpuset_mems)

    def restrict_devices(self, path: str, rules: list[str]) -> None:
        """Deny every device, then allow the given rules ("c 1:3 rwm", ...)."""
        if "devices" not in self.controllers:
            return
        d = self._dir("devices", path)
        write(d / "devices.deny", "a")
        for rule in rules:
            write(d / "devices.allow", rule)

    def join(self, path: str, pid: int) -> None:
        for d in self.cgroup_dirs(path):
            write(d / "cgroup.procs", str(pid))

    def procs(self, path: str) -> list[int]:
        pids: set[int] = set()
        for d in self.cgroup_dirs(path):
            try:
                pids.update(int(x) for x in read_text(d / "cgroup.procs").split())
            except FileNotFoundError:
                continue
        return sorted(pids)

    def destroy(self, path: str) -> None:
        kill_and_remove(self.all_dirs(path))

    def oom_kills(self, path: str) -> int:
        return read_kv(self._dir("memory", path) / "memory.oom_control").get("oom_kill", 0)

    def stats(self, path: str) -> CgroupStats:
        mem = self._dir("memory", path)
        if not mem.is_dir():
            raise NotFound(f"cgroup {path} does not exist")
        stat = read_kv(mem / "memory.stat")
        usage = read_int(mem / "memory.usage_in_bytes")
        inactive = stat.get("total_inactive_file", 0)
        return CgroupStats(
            cpu_usage_ns=read_int(self._dir("cpuacct", path) / "cpuacct.usage"),
            memory_usage=usage,
            memory_working_set=max(usage - inactive, 0),
            memory_rss=stat.get("total_rss", 0),
            oom_kills=self.oom_kills(path),
            pids=read_int(self._dir("pids", path) / "pids.current"),
        )

