"""Pods in their own user namespace (CRI NamespaceMode POD with uid/gid maps), with every
driver: the maps containers see, the pod's namespaces owned by it, ID-mapped rootfs (a
directory and an overlay of layers) and volumes, exec joining it, refusals, no leftovers.

The run root lives under /run/kubelet-py-test-<random> with mode 0711: the pod's root is an
unprivileged host uid and must be able to walk to its rootfs (pytest's tmp dirs are 0700).
"""
from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import FailedPrecondition, InvalidArgument
from engine.execdriver.spec import IDMapping
from engine.graphdriver.base import Mount
from engine.runtime.api import Runtime
from engine.runtime.sandbox import mounts_under
from engine.runtime.spec import (
    ContainerConfig,
    ImageConfig,
    Rootfs,
    SandboxConfig,
    SecurityConfig,
    VolumeMount,
)
from engine.runtime.status import Status
from tests.harness.prereq import need
from tests.integration.runtime.fixtures import (
    DRIVERS,
    busybox_rootfs,
    log_text,
    run_to_exit,
    sandbox_config,
    searchable_runtime,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def rt() -> Iterator[Runtime]:
    with searchable_runtime() as runtime:
        need(runtime.user_namespaces("native"), "ID-mapped mounts on the run root",
             "Linux 5.19+ on ext4/xfs/btrfs/tmpfs")
        yield runtime


def _maps() -> tuple[int, tuple[IDMapping, ...]]:
    host = 100000 + 65536 * secrets.randbelow(64)
    return host, (IDMapping(container_id=0, host_id=host, size=65536),)


def _pod(handler: str, **kw: object) -> tuple[int, SandboxConfig]:
    host, maps = _maps()
    return host, sandbox_config(handler, uid_mappings=maps, gid_mappings=maps, **kw)


@pytest.mark.parametrize("handler", DRIVERS)
def test_containers_see_the_pods_maps_and_an_id_mapped_rootfs(rt: Runtime, tmp_path: Path,
                                                              handler: str) -> None:
    host, config = _pod(handler, sysctls={"net.ipv4.ip_unprivileged_port_start": "80"})
    sid = rt.run_sandbox(config)
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    state, out = run_to_exit(rt, sid, rootfs,
                             "cat /proc/self/uid_map /proc/self/gid_map; id -u; "
                             "stat -c %u:%g /bin/busybox /etc/hosts /dev/shm; "
                             "echo x > /written && stat -c %u /written; "
                             "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; "
                             "readlink /proc/self/ns/user; echo > /dev/null && echo dev-ok")
    assert state.exit_code == 0, out
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == lines[1] == ["0", str(host), "65536"]
    userns_ino = os.stat(rt.ctx.store.sandbox_dir(sid) / "ns" / "user").st_ino
    assert out.splitlines()[2:] == ["0", "0:0", "0:0", "0:0", "0", "80",
                                    f"user:[{userns_ino}]", "dev-ok"]
    # written through the ID-mapped directory rootfs: on disk with the container's ids
    assert (rootfs / "written").stat().st_uid == 0


@pytest.mark.parametrize("handler", DRIVERS)
def test_overlay_rootfs_layers_are_id_mapped_and_writes_land_in_the_upper(
        rt: Runtime, tmp_path: Path, handler: str) -> None:
    host, config = _pod(handler)
    sid = rt.run_sandbox(config)
    lower = busybox_rootfs(tmp_path / "lower")
    (lower / "etc" / "secret").write_text("s\n")
    (lower / "etc" / "secret").chmod(0o600)  # only the (mapped) root may read it
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    overlay = Mount(type="overlay", source="overlay",
                    options=(f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}"))
    cfg = ContainerConfig(name="c", command=("/bin/sh", "-c", "cat /etc/secret; "
                                             "echo more >> /etc/secret; touch /new; "
                                             "stat -c %u:%g / /etc/secret"))
    cid = rt.create_container(sid, cfg, rootfs=Rootfs(mounts=(overlay,)), image=ImageConfig())
    rt.start_container(cid)
    state = rt.wait_container(cid, timeout=30)
    out = log_text(rt, cid)
    assert state.exit_code == 0, out
    assert out.splitlines() == ["s", "0:0", "0:0"]
    # the upper holds host ids (the pod's root), the layers are untouched
    assert ((upper / "new").stat().st_uid, (upper / "etc" / "secret").stat().st_uid) == (
        host, host)
    assert (lower / "etc" / "secret").read_text() == "s\n"
    rt.remove_container(cid)
    assert (lower / "bin" / "busybox").exists()  # removal never walks into a mapped layer


@pytest.mark.parametrize("handler", DRIVERS)
def test_volumes_are_id_mapped_and_exec_joins_the_user_namespace(
        rt: Runtime, tmp_path: Path, handler: str) -> None:
    host, config = _pod(handler)
    sid = rt.run_sandbox(config)
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "data").write_text("host data\n")
    cfg = ContainerConfig(name="c", command=("sleep", "600"),
                          mounts=(VolumeMount(container_path="/vol", host_path=str(volume)),))
    cid = rt.create_container(sid, cfg, rootfs=Rootfs(directory=str(rootfs)),
                              image=ImageConfig())
    rt.start_container(cid)
    result = rt.exec_sync(cid, ("sh", "-c", "cat /proc/self/uid_map; stat -c %u /vol/data; "
                                "cat /vol/data; echo c > /vol/out"), timeout=20)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.decode().split() == ["0", str(host), "65536", "0", "host", "data"]
    assert (volume / "out").stat().st_uid == 0  # through the mapping: the pod's 0 is 0
    rt.stop_container(cid, timeout=0)


@pytest.mark.parametrize("handler", DRIVERS)
def test_shared_pid_namespace_in_a_user_namespace(rt: Runtime, tmp_path: Path,
                                                  handler: str) -> None:
    _, config = _pod(handler, share_pid=True)
    sid = rt.run_sandbox(config)
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    first = rt.create_container(sid, ContainerConfig(name="a", command=("sleep", "601")),
                                rootfs=Rootfs(directory=str(rootfs)), image=ImageConfig())
    rt.start_container(first)
    state, out = run_to_exit(rt, sid, rootfs, "cat /proc/[0-9]*/cmdline")
    assert state.exit_code == 0
    assert "601" in out  # the other container's sleep is visible: one PID namespace


@pytest.mark.parametrize("handler", DRIVERS)
def test_node_mode_is_the_hosts_user_namespace(rt: Runtime, tmp_path: Path,
                                               handler: str) -> None:
    sid = rt.run_sandbox(sandbox_config(handler))
    _, out = run_to_exit(rt, sid, busybox_rootfs(tmp_path / "rootfs"),
                         "cat /proc/self/uid_map")
    with open("/proc/self/uid_map") as f:
        assert out.split() == f.read().split()
    assert not (rt.ctx.store.sandbox_dir(sid) / "ns" / "user").exists()


@pytest.mark.parametrize("maps, needle", [
    ((IDMapping(0, 100000, 65536), IDMapping(65536, 300000, 65536)), "exactly one uid"),
    ((IDMapping(1, 100000, 65536),), "container id 0 is not mapped"),
    ((IDMapping(0, 100000, 0),), "at least 1"),
    ((IDMapping(0, 2**32 - 10, 65536),), "32-bit"),
])
def test_bad_maps_are_refused_and_leave_nothing(rt: Runtime, maps: tuple[IDMapping, ...],
                                                needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        rt.run_sandbox(sandbox_config("native", uid_mappings=maps, gid_mappings=maps))
    assert rt.list_sandboxes() == []


@pytest.mark.parametrize("kw, needle", [
    ({"host_network": True}, "host's network"), ({"host_pid": True}, "host's PID"),
    ({"host_ipc": True}, "host's IPC"), ({"privileged": True}, "privileged"),
])
def test_host_namespaces_and_privileged_are_refused(rt: Runtime, kw: dict[str, bool],
                                                    needle: str) -> None:
    _, maps = _maps()
    with pytest.raises(InvalidArgument, match=needle):
        rt.run_sandbox(sandbox_config("native", uid_mappings=maps, gid_mappings=maps, **kw))
    assert rt.list_sandboxes() == []


@pytest.mark.parametrize("handler", DRIVERS)
def test_unmapped_user_and_shared_propagation_are_refused(rt: Runtime, tmp_path: Path,
                                                          handler: str) -> None:
    _, config = _pod(handler)
    sid = rt.run_sandbox(config)
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    outside = ContainerConfig(name="u", command=("true",),
                              security=SecurityConfig(run_as_user=70000))
    with pytest.raises(InvalidArgument, match="uid 70000 is not mapped"):
        rt.create_container(sid, outside, rootfs=Rootfs(directory=str(rootfs)),
                            image=ImageConfig())
    shared = ContainerConfig(name="s", command=("true",), mounts=(
        VolumeMount(container_path="/v", host_path=str(tmp_path), propagation="rshared"),))
    with pytest.raises(InvalidArgument, match="only private propagation"):
        rt.create_container(sid, shared, rootfs=Rootfs(directory=str(rootfs)),
                            image=ImageConfig())
    assert rt.list_containers(sid) == []
    assert [p for p in mounts_under(rt.ctx.store.sandbox_dir(sid))
            if "/containers/" in p] == []


def test_a_volume_that_cannot_be_id_mapped_is_a_precise_error(rt: Runtime,
                                                              tmp_path: Path) -> None:
    _, config = _pod("native")
    sid = rt.run_sandbox(config)
    cfg = ContainerConfig(name="p", command=("true",), mounts=(
        VolumeMount(container_path="/hostproc", host_path="/proc/sys"),))
    with pytest.raises(FailedPrecondition, match="cannot be ID-mapped"):
        rt.create_container(sid, cfg, rootfs=Rootfs(directory=str(
            busybox_rootfs(tmp_path / "rootfs"))), image=ImageConfig())
    assert rt.list_containers(sid) == []


def test_stopping_the_pod_ends_its_containers(rt: Runtime, tmp_path: Path) -> None:
    _, config = _pod("native")
    sid = rt.run_sandbox(config)
    cid = rt.create_container(sid, ContainerConfig(name="c", command=("sleep", "600")),
                              rootfs=Rootfs(directory=str(busybox_rootfs(tmp_path / "r"))),
                              image=ImageConfig())
    rt.start_container(cid)
    deadline = time.monotonic() + 60
    while rt.container_status(cid).state.status is not Status.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rt.stop_sandbox(sid)
    assert rt.container_status(cid).state.status is Status.EXITED


def test_a_failure_inside_the_user_namespace_leaves_nothing(rt: Runtime) -> None:
    """A sysctl the pod's namespaces do not have fails in the helper inside the new user
    namespace: a precise error, and no namespace pinned, no directory left."""
    _, config = _pod("native", sysctls={"net.ipv4.no_such_sysctl": "1"})
    with pytest.raises(InvalidArgument, match="no_such_sysctl"):
        rt.run_sandbox(config)
    assert rt.list_sandboxes() == []
    assert list(rt.ctx.store.root.iterdir()) == []
