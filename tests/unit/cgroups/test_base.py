"""The plain-file helpers under both cgroup managers, against a temp dir."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.cgroups.base import Resources, mkdir, read_text, remove_made, subtree, write
from engine.cgroups.v1 import CgroupV1
from engine.errors import InvalidArgument


def test_write_and_read_small_files(tmp_path: Path) -> None:
    write(tmp_path / "f", "12")
    write(tmp_path / "f", "3")  # one write, truncating (cgroupfs takes each as a command)
    assert read_text(tmp_path / "f") == "3"
    with pytest.raises(InvalidArgument, match="cgroup write '1' to"):
        write(tmp_path / "missing" / "f", "1")
    with pytest.raises(FileNotFoundError):
        read_text(tmp_path / "nope")


def test_subtree_lists_children_before_parents(tmp_path: Path) -> None:
    for d in ("a/b/c", "a/d"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "a" / "file").write_text("")
    order = [str(Path(p).relative_to(tmp_path)) for p in subtree(tmp_path / "a")]
    assert sorted(order) == ["a", "a/b", "a/b/c", "a/d"]
    assert order.index("a/b/c") < order.index("a/b") < order.index("a")
    assert order.index("a/d") < order.index("a")
    assert subtree(tmp_path / "gone") == [str(tmp_path / "gone")]


def test_mkdir_says_whether_it_made_the_directory(tmp_path: Path) -> None:
    assert mkdir(tmp_path / "x") is True
    assert mkdir(tmp_path / "x") is False
    with pytest.raises(InvalidArgument, match="cannot create cgroup"):
        mkdir(tmp_path / "no" / "parent")
    remove_made([tmp_path / "x", tmp_path / "never-made"])
    assert not (tmp_path / "x").exists()


def test_a_create_that_fails_half_way_leaves_nothing(tmp_path: Path) -> None:
    for c in ("cpu", "cpuacct", "memory"):
        (tmp_path / c).mkdir()
    (tmp_path / "cpu" / "kp").mkdir()  # already there: kept
    (tmp_path / "memory" / "kp").write_text("")  # a file where a directory must go
    m = CgroupV1(tmp_path)
    with pytest.raises(InvalidArgument, match="cannot create cgroup"):
        m.create("kp/pod", Resources())
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "cpu", "cpu/kp", "cpuacct", "memory", "memory/kp"]
