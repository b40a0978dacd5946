"""One conformance suite for every GraphDriver (overlay, vfs): snapshots, real mounts."""
from __future__ import annotations

import contextlib
import io
import os
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import AlreadyExists, FailedPrecondition, NotFound
from engine.graphdriver import DRIVERS, new_driver
from engine.graphdriver.base import GraphDriver, Kind, Mount
from engine.graphdriver.mount import mount_all, unmount
from tests.unit.graphdriver.tarmaker import Tar

pytestmark = pytest.mark.integration


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphDriver]:
    d = new_driver(request.param, tmp_path / request.param)
    yield d
    d.close()


@contextlib.contextmanager
def mounted(mounts: list[Mount], tmp: Path) -> Iterator[Path]:
    target = tmp / f"mnt-{secrets.token_hex(4)}"
    target.mkdir()
    mount_all(mounts, str(target))
    try:
        yield target
    finally:
        unmount(str(target))
        target.rmdir()


def layer(d: GraphDriver, name: str, parent: str | None, tar: bytes) -> None:
    key = f"extract-{name}"
    d.prepare(key, parent)
    d.apply(key, io.BytesIO(tar))
    d.commit(name, key)


def stack(d: GraphDriver) -> None:
    layer(d, "l1", None, Tar().file("etc/a", b"a1").file("etc/b", b"b1").dir("var/lib")
          .file("var/lib/x", b"x").bytes())
    layer(d, "l2", "l1", Tar().file("etc/a", b"a2").file("etc/.wh.b", b"")
          .file("var/lib/.wh..wh..opq", b"").file("var/lib/y", b"y").bytes())


def test_layers_stack_with_whiteouts(driver: GraphDriver, tmp_path: Path) -> None:
    stack(driver)
    with mounted(driver.prepare("c1", "l2"), tmp_path) as root:
        assert (root / "etc/a").read_bytes() == b"a2"
        assert not (root / "etc/b").exists()
        assert sorted(os.listdir(root / "var/lib")) == ["y"]
        (root / "new").write_bytes(b"container")
        (root / "etc/a").write_bytes(b"changed")
    with mounted(driver.mounts("c1"), tmp_path) as root:  # the upper dir persists
        assert (root / "new").read_bytes() == b"container"
    with mounted(driver.view("v1", "l2"), tmp_path) as root:  # layers are untouched
        assert (root / "etc/a").read_bytes() == b"a2" and not (root / "new").exists()
        with pytest.raises(OSError):
            (root / "w").write_bytes(b"")


def test_view_is_read_only_single_and_multi(driver: GraphDriver, tmp_path: Path) -> None:
    stack(driver)
    for key, parent in (("v-one", "l1"), ("v-two", "l2"), ("v-none", None)):
        with mounted(driver.view(key, parent), tmp_path) as root, pytest.raises(OSError):
            (root / "w").write_bytes(b"")
        assert driver.stat(key).kind is Kind.VIEW


def test_metadata_rules(driver: GraphDriver) -> None:
    stack(driver)
    assert driver.stat("l2").parent == "l1" and driver.stat("l2").kind is Kind.COMMITTED
    with pytest.raises(AlreadyExists):
        driver.prepare("l1", None)
    with pytest.raises(NotFound):
        driver.prepare("x", "nope")
    driver.prepare("active", "l2")
    with pytest.raises(FailedPrecondition):
        driver.prepare("y", "active")  # parent must be committed
    with pytest.raises(FailedPrecondition):
        driver.remove("l2")  # has a child
    with pytest.raises(FailedPrecondition):
        driver.mounts("l1")
    driver.view("vw", "l1")
    with pytest.raises(FailedPrecondition):
        driver.commit("z", "vw")
    driver.remove("active")
    driver.remove("l2")
    assert {i.key for i in driver.walk()} == {"l1", "vw"}
    with pytest.raises(NotFound):
        driver.stat("l2")


def test_usage_counts_own_layer(driver: GraphDriver) -> None:
    layer(driver, "big", None, Tar().file("f", b"z" * 100_000).bytes())
    u = driver.usage("big")
    assert u.size >= 100_000 and u.inodes >= 1


def test_reopen_repairs_orphans(tmp_path: Path) -> None:
    for name in DRIVERS:
        root = tmp_path / name
        d = new_driver(name, root)
        layer(d, "l1", None, Tar().file("a", b"1").bytes())
        d.close()
        (root / "snapshots" / "999").mkdir()  # what a crash between mkdir and commit leaves
        d = new_driver(name, root)
        assert not (root / "snapshots" / "999").exists()
        assert [i.key for i in d.walk()] == ["l1"]
        with pytest.raises(FailedPrecondition, match="in use"):
            new_driver(name, root)
        d.close()


def test_overlay_prepare_and_mount_is_fast(tmp_path: Path) -> None:
    d = new_driver("overlay", tmp_path / "ov")
    stack(d)
    times = []
    for i in range(20):
        t0 = time.perf_counter()
        mounts = d.prepare(f"c{i}", "l2")
        target = tmp_path / f"m{i}"
        target.mkdir()
        mount_all(mounts, str(target))
        times.append(time.perf_counter() - t0)
        assert stat.S_ISDIR((target / "etc").stat().st_mode)
        unmount(str(target))
    times.sort()
    d.close()
    assert times[len(times) // 2] < 0.05  # loose bound for a loaded CI machine; bench is 5 ms
