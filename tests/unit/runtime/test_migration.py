"""engine.runtime.migration: which cgroup.procs primes the migration lock, and priming
that writes our pid while the block runs and stops after it."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from engine.runtime import migration


def _tree(root: Path, *dirs: str) -> None:
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d / "cgroup.procs").write_text("")


def _self(tmp_path: Path, text: str) -> str:
    f = tmp_path / "self-cgroup"
    f.write_text(text)
    return str(f)


def test_v1_uses_a_controller_hierarchy_not_a_named_one(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _tree(root, "name=systemd/x", "cpu,cpuacct/svc/a")
    got = migration.own_procs_file(root=root, self_cgroup=_self(
        tmp_path, "2:name=systemd:/x\n1:cpu,cpuacct:/svc/a\n0::/x\n"))
    assert got == root / "cpu,cpuacct" / "svc" / "a" / "cgroup.procs"


@pytest.mark.parametrize("where", ["", "unified"])
def test_v2_pure_or_hybrid(tmp_path: Path, where: str) -> None:
    root = tmp_path / "cg"
    _tree(root, os.path.join(where, "system.slice/e.service"))
    got = migration.own_procs_file(root=root, self_cgroup=_self(
        tmp_path, "0::/system.slice/e.service\n"))
    assert got == root / where / "system.slice" / "e.service" / "cgroup.procs"


def test_none_when_nothing_is_mounted(tmp_path: Path) -> None:
    assert migration.own_procs_file(root=tmp_path, self_cgroup=_self(
        tmp_path, "1:pids:/a\n0::/a\n")) is None
    assert migration.own_procs_file(root=tmp_path, self_cgroup=str(tmp_path / "no")) is None


def test_primed_writes_our_pid_until_the_block_ends(tmp_path: Path) -> None:
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    with migration.primed(procs=procs, interval=0.001):
        deadline = time.monotonic() + 60
        while procs.read_text() != str(os.getpid()) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert procs.read_text() == str(os.getpid())
    deadline = time.monotonic() + 60  # the primer ends (a write under way lands first)
    while any(t.name == "cgroup-primer" for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.001)
    procs.write_text("")
    time.sleep(0.01)
    assert procs.read_text() == ""  # no write after the block


def test_a_failing_write_changes_nothing(tmp_path: Path) -> None:
    with migration.primed(procs=tmp_path / "missing" / "cgroup.procs", interval=0.001):
        time.sleep(0.005)
    assert not (tmp_path / "missing").exists()
