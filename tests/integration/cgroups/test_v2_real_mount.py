"""Our cgroup v2 code path (engine.cgroups.v2.CgroupV2) against a real cgroup2 hierarchy.

This host is cgroup v1 (hybrid): cpu, cpuacct, cpuset, memory, pids, devices and freezer are
bound to v1 hierarchies, so a cgroup2 mount here (the one unified hierarchy, mounted again in
a temp dir) offers only the controllers free of v1 (hugetlb here) plus the core files every
v2 cgroup has: cgroup.procs, cgroup.kill, cgroup.freeze, cgroup.events, cpu.stat.
Exercised for real: creating the pod/container tree (enabling controllers only where
available), attaching a process, reading cpu.stat usage, the absent memory/pids files read
as zero, killing everything through cgroup.kill, removing the tree.
NOT exercisable on this host: cpu.weight / cpu.max, memory.max and memory.events oom_kill,
pids.max / pids.current, cpuset.* (those controllers are on v1); they stay covered against
fake trees in tests/unit/runtime/test_cgroups.py. A limit written here is a precise error.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cgroups.base import Resources
from engine.cgroups.v2 import CgroupV2
from engine.errors import InvalidArgument
from tests.harness.prereq import need, need_root

pytestmark = pytest.mark.integration


@pytest.fixture
def v2() -> Iterator[CgroupV2]:
    need_root()
    with open("/proc/filesystems") as f:
        need("cgroup2" in f.read(), "a kernel with cgroup2", "a kernel with cgroup v2")
    mnt = tempfile.mkdtemp(prefix="kpy-test-cg2-")
    mounted = subprocess.run(["mount", "-t", "cgroup2", "none", mnt], check=False).returncode
    try:
        need(mounted == 0, "a mountable cgroup2 hierarchy", "run as root on cgroup v1/v2")
        yield CgroupV2(Path(mnt))
    finally:
        if mounted == 0:
            subprocess.run(["umount", mnt], check=True)
        os.rmdir(mnt)


@pytest.fixture
def base(v2: CgroupV2) -> Iterator[str]:
    name = f"kubelet-py-test-{secrets.token_hex(4)}"
    yield name
    if v2.exists(name):
        v2.destroy(name)


def test_pod_and_container_tree_attach_stats_kill_remove(v2: CgroupV2, base: str) -> None:
    pod, ctr = f"{base}/kpy-pod", f"{base}/kpy-pod/ctr"
    v2.create(pod, Resources())
    v2.create(ctr, Resources())
    d = v2.root / ctr
    for f in ("cgroup.procs", "cgroup.kill", "cgroup.freeze", "cgroup.events", "cpu.stat"):
        assert (d / f).exists(), f
    # controllers: only what this mount offers, and never one it does not
    offered = set((v2.root / "cgroup.controllers").read_text().split())
    assert set((v2.root / base / "cgroup.subtree_control").read_text().split()) <= offered
    busy = subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"])
    try:
        v2.join(ctr, busy.pid)
        assert v2.procs(ctr) == [busy.pid]
        assert v2.procs(pod) == []
        with open(f"/proc/{busy.pid}/cgroup") as f:
            assert f"0::/{ctr}\n" in f.read()
        deadline = time.monotonic() + 60
        while (stats := v2.stats(ctr)).cpu_usage_ns < 50_000_000:  # 50 ms of CPU
            assert time.monotonic() < deadline, stats
            time.sleep(0.05)
        # files of controllers bound to v1 are absent here: zero, not an error
        assert (stats.memory_usage, stats.memory_working_set, stats.pids, stats.oom_kills) == \
            (0, 0, 0, 0)
        assert v2.stats(pod).cpu_usage_ns >= stats.cpu_usage_ns  # usage rolls up
        v2.destroy(ctr)  # cgroup.kill, then rmdir
        assert busy.wait(timeout=60) == -9
        assert not d.exists() and v2.exists(pod)
    finally:
        with contextlib.suppress(ProcessLookupError):
            busy.kill()
        busy.wait()
    v2.destroy(pod)
    assert not v2.exists(pod)


def test_destroy_kills_a_whole_subtree(v2: CgroupV2, base: str) -> None:
    v2.create(f"{base}/pod/a", Resources())
    v2.create(f"{base}/pod/b", Resources())
    sleepers = [subprocess.Popen(["/bin/sleep", "60"]) for _ in range(2)]
    try:
        v2.join(f"{base}/pod/a", sleepers[0].pid)
        v2.join(f"{base}/pod/b", sleepers[1].pid)
        v2.destroy(f"{base}/pod")
        assert [p.wait(timeout=60) for p in sleepers] == [-9, -9]
        assert not (v2.root / base / "pod").exists()
    finally:
        for p in sleepers:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()


def test_a_limit_needs_its_controller(v2: CgroupV2, base: str) -> None:
    """Where memory is bound to v1 (this host) a memory limit is a precise error and nothing
    is left behind; where the v2 mount offers it, the limit is written."""
    offered = set((v2.root / "cgroup.controllers").read_text().split())
    if "memory" in offered:
        v2.create(f"{base}/pod", Resources(memory_limit=64 << 20))
        assert (v2.root / base / "pod" / "memory.max").read_text().strip() == str(64 << 20)
        return
    with pytest.raises(InvalidArgument, match=r"memory\.max"):
        v2.create(f"{base}/pod", Resources(memory_limit=64 << 20))
    assert not v2.exists(base)
