"""The cgroup managers against fake hierarchies in a temp dir (file writes, no kernel)."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.cgroups.base import Resources, shares_to_weight
from engine.cgroups.detect import manager
from engine.cgroups.v1 import CgroupV1
from engine.cgroups.v2 import CgroupV2
from engine.errors import InvalidArgument, NotFound


def _v1(root: Path) -> CgroupV1:
    for c in ("cpu", "cpuacct", "cpuset", "memory", "pids"):
        (root / c).mkdir(parents=True)
    (root / "cpuset" / "cpuset.cpus").write_text("0-1\n")
    (root / "cpuset" / "cpuset.mems").write_text("0\n")
    return CgroupV1(root)


class _FakeV1(CgroupV1):
    """mkdir in a real cgroupfs creates the control files; here we create empty ones."""

    def create(self, path: str, resources: Resources) -> None:
        parts = path.split("/")
        for c in self.controllers:
            for i in range(1, len(parts) + 1):
                d = self.root / c / "/".join(parts[:i])
                d.mkdir(exist_ok=True)
                if c == "cpuset":
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        (d / f).touch()
        super().create(path, resources)


def test_detect(tmp_path: Path) -> None:
    assert isinstance(manager(tmp_path), CgroupV1)
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    assert isinstance(manager(tmp_path), CgroupV2)


def test_v1_create_update_stats(tmp_path: Path) -> None:
    _v1(tmp_path)
    m = _FakeV1(tmp_path)
    m.create("kp/pod/c", Resources(cpu_shares=512, cpu_quota=20000, cpu_period=100000,
                                   memory_limit=1 << 20, pids_limit=7))
    d = tmp_path / "cpu" / "kp" / "pod" / "c"
    assert (d / "cpu.shares").read_text() == "512"
    assert (d / "cpu.cfs_quota_us").read_text() == "20000"
    assert (tmp_path / "memory/kp/pod/c/memory.limit_in_bytes").read_text() == str(1 << 20)
    assert (tmp_path / "pids/kp/pod/c/pids.max").read_text() == "7"
    assert (tmp_path / "cpuset/kp/pod/c/cpuset.cpus").read_text() == "0-1"
    mem = tmp_path / "memory/kp/pod/c"
    (mem / "memory.usage_in_bytes").write_text("1000\n")
    (mem / "memory.stat").write_text("total_inactive_file 300\ntotal_rss 600\n")
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (tmp_path / "cpuacct/kp/pod/c/cpuacct.usage").write_text("12345\n")
    s = m.stats("kp/pod/c")
    assert (s.memory_working_set, s.memory_rss, s.cpu_usage_ns, s.oom_kills) == \
        (700, 600, 12345, 2)
    with pytest.raises(NotFound):
        m.update("kp/other", Resources(memory_limit=1))


def test_v2_create_update_stats(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu cpuset memory pids io\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    m = CgroupV2(tmp_path)
    pod = tmp_path / "kp"
    pod.mkdir()
    (pod / "cgroup.controllers").write_text("cpu cpuset memory pids\n")
    (pod / "cgroup.subtree_control").write_text("")
    m.create("kp/c", Resources(cpu_shares=1024, cpu_quota=50000, cpu_period=100000,
                               memory_limit=4096, pids_limit=3))
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +cpuset +memory +pids"
    c = tmp_path / "kp" / "c"
    assert (c / "cpu.weight").read_text() == str(shares_to_weight(1024)) == "39"
    assert (c / "cpu.max").read_text() == "50000 100000"
    assert (c / "memory.max").read_text() == "4096"
    m.update("kp/c", Resources(cpu_quota=-1, cpu_period=100000))
    assert (c / "cpu.max").read_text() == "max 100000"
    (c / "memory.current").write_text("5000\n")
    (c / "memory.stat").write_text("anon 3000\ninactive_file 1000\n")
    (c / "memory.events").write_text("oom 1\noom_kill 1\n")
    (c / "cpu.stat").write_text("usage_usec 7\n")
    s = m.stats("kp/c")
    assert (s.memory_working_set, s.memory_rss, s.cpu_usage_ns, s.oom_kills) == \
        (4000, 3000, 7000, 1)


def test_invalid_values(tmp_path: Path) -> None:
    m = CgroupV2(tmp_path)
    for bad in (Resources(memory_limit=-1), Resources(cpu_period=10), Resources(cpu_quota=5)):
        with pytest.raises(InvalidArgument):
            bad.validate()
    with pytest.raises(InvalidArgument):
        m.exists("../escape")
