"""cgroup v2: the unified hierarchy; controllers enabled through cgroup.subtree_control."""
from __future__ import annotations

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
    shares_to_weight,
    write,
)
from engine.errors import NotFound

WANTED = ("cpu", "cpuset", "memory", "pids")


class CgroupV2:
    version = 2

    def __init__(self, root: Path = Path("/sys/fs/cgroup")) -> None:
        self.root = root

    def _dir(self, path: str) -> Path:
        return self.root / check_path(path)

    def cgroup_dirs(self, path: str) -> list[Path]:
        return [self._dir(path)]

    def exists(self, path: str) -> bool:
        return self._dir(path).is_dir()

    def create(self, path: str, resources: Resources) -> None:
        resources.validate()
        cur = self.root
        made: list[Path] = []
        try:
            for part in check_path(path).split("/"):
                available = set(read_text(cur / "cgroup.controllers").split())
                enabled = set(read_text(cur / "cgroup.subtree_control").split())
                missing = [c for c in WANTED if c in available and c not in enabled]
                if missing:
                    write(cur / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
                cur = cur / part
                if mkdir(cur):
                    made.append(cur)
            self.update(path, resources)
        except BaseException:
            remove_made(made)
            raise

    def update(self, path: str, resources: Resources) -> None:
        resources.validate()
        d = self._dir(path)
        if not d.is_dir():
            raise NotFound(f"cgroup {path} does not exist")
        if resources.cpu_shares:
            write(d / "cpu.weight", str(shares_to_weight(resources.cpu_shares)))
        if resources.cpu_quota or resources.cpu_period:
            quota = "max" if resources.cpu_quota <= 0 else str(resources.cpu_quota)
            write(d / "cpu.max", f"{quota} {resources.cpu_period or 100000}")
        if resources.memory_limit:
            write(d / "memory.max", str(resources.memory_limit))
        if resources.pids_limit:
            write(d / "pids.max", str(resources.pids_limit))
        if resources.cpuset_cpus:
            write(d / "cpuset.cpus", resources.cpuset_cpus)
        if resources.cpuset_mems:
            write(d / "cpuset.mems", resources.cpuset_mems)

    def join(self, path: str, pid: int) -> None:
        write(self._dir(path) / "cgroup.procs", str(pid))

    def procs(self, path: str) -> list[int]:
        try:
            return sorted(int(x) for x in read_text(self._dir(path) / "cgroup.procs").split())
        except FileNotFoundError:
            return []

    def destroy(self, path: str) -> None:
        d = self._dir(path)
        if (d / "cgroup.kill").exists():
            write(d / "cgroup.kill", "1")
        kill_and_remove([d])

    def oom_kills(self, path: str) -> int:
        return read_kv(self._dir(path) / "memory.events").get("oom_kill", 0)

    def stats(self, path: str) -> CgroupStats:
        d = self._dir(path)
        if not d.is_dir():
            raise NotFound(f"cgroup {path} does not exist")
        stat = read_kv(d / "memory.stat")
        usage = read_int(d / "memory.current")
        return CgroupStats(
            cpu_usage_ns=read_kv(d / "cpu.stat").get("usage_usec", 0) * 1000,
            memory_usage=usage,
            memory_working_set=max(usage - stat.get("inactive_file", 0), 0),
            memory_rss=stat.get("anon", 0),
            oom_kills=self.oom_kills(path),
            pids=read_int(d / "pids.current"),
        )
