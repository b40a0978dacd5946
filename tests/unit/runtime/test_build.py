from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.runtime import build
from engine.runtime.spec import (
    ContainerConfig,
    ImageConfig,
    SandboxConfig,
    SeccompChoice,
    SecurityConfig,
    VolumeMount,
)
from engine.sys import caps


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return str(root)


def _sandbox(tmp_path: Path, **kw: object) -> build.SandboxFacts:
    config = SandboxConfig(name="p", namespace="n", uid="u", hostname="h", **kw)  # type: ignore[arg-type]
    return build.SandboxFacts(id="sid", dir=str(tmp_path / "sb"), config=config,
                              cgroup_path="kp/pod")


def _spec(tmp_path: Path, rootfs: str, config: ContainerConfig,
          **kw: object) -> build.InitSpec:
    return build.init_spec("cid", sandbox=_sandbox(tmp_path, **kw), config=config,
                           image=ImageConfig(), rootfs=rootfs, image_volumes={})


def test_command_merge() -> None:
    image = ImageConfig(entrypoint=("/ep",), cmd=("c1",))
    assert build.command(ContainerConfig(name="c"), image) == ("/ep", "c1")
    assert build.command(ContainerConfig(name="c", args=("a",)), image) == ("/ep", "a")
    assert build.command(ContainerConfig(name="c", command=("/x",), args=("a",)), image) == \
        ("/x", "a")
    with pytest.raises(InvalidArgument, match="no command"):
        build.command(ContainerConfig(name="c"), ImageConfig())


def test_environment_merge() -> None:
    env = build.environment(ContainerConfig(name="c", env=(("A", "req"),)),
                            ImageConfig(env=("A=img", "B=img", "PATH=/img")), hostname="h",
                            home="/root")
    assert env == ("PATH=/img", "A=req", "B=img", "HOSTNAME=h", "HOME=/root")


def test_default_spec(tmp_path: Path, rootfs: str) -> None:
    spec = _spec(tmp_path, rootfs, ContainerConfig(name="c", command=("/bin/true",)))
    assert spec.capabilities.effective == tuple(sorted(caps.DEFAULT_CAPABILITIES,
                                                       key=caps.CAPABILITIES.__getitem__))
    assert spec.capabilities.inheritable == () and spec.capabilities.ambient == ()
    assert spec.seccomp is not None and spec.seccomp.default_action == "SCMP_ACT_ERRNO"
    assert spec.masked_paths == build.DEFAULT_MASKED
    assert spec.readonly_paths == build.DEFAULT_READONLY
    assert spec.cgroup_path == "kp/pod/cid"
    assert [n.type for n in spec.namespaces] == ["mnt", "pid", "net", "ipc", "uts"]
    assert spec.namespace("net") is not None
    assert spec.namespace("net").path == str(tmp_path / "sb" / "ns" / "net")  # type: ignore[union-attr]
    sys_mount = next(m for m in spec.mounts if m.destination == "/sys")
    assert "ro" in sys_mount.options


def test_caps_add_drop_all(tmp_path: Path, rootfs: str) -> None:
    sec = SecurityConfig(drop_capabilities=("ALL",), add_capabilities=("net_bind_service",))
    spec = _spec(tmp_path, rootfs, ContainerConfig(name="c", command=("/x",), security=sec))
    assert spec.capabilities.bounding == ("CAP_NET_BIND_SERVICE",)
    with pytest.raises(InvalidArgument, match="unknown capability"):
        _spec(tmp_path, rootfs, ContainerConfig(name="c", command=("/x",), security=SecurityConfig(
            add_capabilities=("CAP_MAKE_COFFEE",))))


def test_privileged_needs_privileged_sandbox(tmp_path: Path, rootfs: str) -> None:
    config = ContainerConfig(name="c", command=("/x",), security=SecurityConfig(privileged=True))
    with pytest.raises(InvalidArgument, match="privileged sandbox"):
        _spec(tmp_path, rootfs, config)
    spec = _spec(tmp_path, rootfs, config, privileged=True)
    assert spec.seccomp is None and spec.masked_paths == () and spec.devices == ()
    assert set(spec.capabilities.bounding) == set(caps.current_bounding())


def test_host_namespaces(tmp_path: Path, rootfs: str) -> None:
    spec = _spec(tmp_path, rootfs, ContainerConfig(name="c", command=("/x",)),
                 host_network=True, host_pid=True, host_ipc=True)
    assert [n.type for n in spec.namespaces] == ["mnt"]
    shm = next(m for m in spec.mounts if m.destination == "/dev/shm")
    assert shm.source == "/dev/shm"
    shared = _spec(tmp_path, rootfs, ContainerConfig(name="c", command=("/x",)), share_pid=True)
    assert shared.namespace("pid").path == str(tmp_path / "sb" / "ns" / "pid")  # type: ignore[union-attr]


def test_seccomp_choices(tmp_path: Path, rootfs: str) -> None:
    unconfined = SecurityConfig(seccomp=SeccompChoice("Unconfined"))
    assert _spec(tmp_path, rootfs, ContainerConfig(name="c", command=("/x",),
                                                   security=unconfined)).seccomp is None
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    for path in (str(empty), str(tmp_path / "missing.json"), "relative.json"):
        with pytest.raises(InvalidArgument):
            _spec(tmp_path, rootfs, ContainerConfig(name="c", command=("/x",), security=(
                SecurityConfig(seccomp=SeccompChoice("Localhost", path)))))


def test_paths_outside_rootfs_refused(tmp_path: Path, rootfs: str) -> None:
    os.symlink("/", os.path.join(rootfs, "out"))
    with pytest.raises(InvalidArgument, match="outside"):
        _spec(tmp_path, rootfs, ContainerConfig(name="c", command=("/x",), working_dir="/out/etc"))
    with pytest.raises(InvalidArgument, match="outside"):
        _spec(tmp_path, rootfs, ContainerConfig(name="c", command=("/x",), mounts=(
            VolumeMount(container_path="/out/tmp", host_path=str(tmp_path)),)))
    with pytest.raises(InvalidArgument, match="does not exist"):
        _spec(tmp_path, rootfs, ContainerConfig(name="c", command=("/x",), mounts=(
            VolumeMount(container_path="/v", host_path=str(tmp_path / "nope")),)))


def test_volume_options(tmp_path: Path, rootfs: str) -> None:
    spec = _spec(tmp_path, rootfs, ContainerConfig(name="c", command=("/x",), mounts=(
        VolumeMount(container_path="/v", host_path=str(tmp_path), readonly=True,
                    propagation="rslave"),)))
    vol = next(m for m in spec.mounts if m.destination == "/v")
    assert vol.options == ("rbind", "rslave", "ro") and vol.source == str(tmp_path)


def test_recursive_readonly_volume(tmp_path: Path, rootfs: str) -> None:
    spec = _spec(tmp_path, rootfs, ContainerConfig(name="c", command=("/x",), mounts=(
        VolumeMount(container_path="/v", host_path=str(tmp_path), readonly=True,
                    recursive_readonly=True),)))
    vol = next(m for m in spec.mounts if m.destination == "/v")
    assert vol.options == ("rbind", "rprivate", "ro", "rro")
    for bad in (VolumeMount(container_path="/v", host_path=str(tmp_path),
                            recursive_readonly=True),
                VolumeMount(container_path="/v", host_path=str(tmp_path), readonly=True,
                            recursive_readonly=True, propagation="rshared")):
        with pytest.raises(InvalidArgument, match="recursive read-only"):
            _spec(tmp_path, rootfs, ContainerConfig(name="c", command=("/x",), mounts=(bad,)))
