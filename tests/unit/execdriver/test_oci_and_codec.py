from __future__ import annotations

import dataclasses

from engine.cgroups.base import Resources
from engine.execdriver.codec import dumps, loads
from engine.execdriver.oci import config
from engine.execdriver.seccomp import parse_profile, runtime_default
from engine.execdriver.spec import Capabilities, InitSpec, MountPoint, Namespace, User


def _spec() -> InitSpec:
    return InitSpec(
        id="c", rootfs="/r", args=("/bin/sh",), env=("A=1",), cwd="/w",
        user=User(1, 2, (3,)), hostname="h",
        namespaces=(Namespace("mnt"), Namespace("net", "/run/ns/net"), Namespace("uts")),
        mounts=(MountPoint("/proc", "proc", "proc", ("nosuid",)),),
        masked_paths=("/proc/kcore",), readonly_paths=("/proc/sys",),
        capabilities=Capabilities(bounding=("CAP_KILL",), effective=("CAP_KILL",)),
        seccomp=runtime_default(), cgroup_path="kp/pod/c",
        resources=Resources(cpu_shares=2, memory_limit=1 << 20, pids_limit=9))


def test_codec_roundtrip() -> None:
    spec = _spec()
    assert loads(InitSpec, dumps(spec)) == spec


def test_oci_config() -> None:
    c = config(_spec())
    assert c["process"]["user"] == {"uid": 1, "gid": 2, "additionalGids": [3]}
    assert c["process"]["capabilities"]["inheritable"] == []
    assert c["linux"]["namespaces"] == [{"type": "mount"}, {"type": "network",
                                                           "path": "/run/ns/net"},
                                        {"type": "uts"}]
    assert c["linux"]["cgroupsPath"] == "/kp/pod/c"
    assert c["linux"]["resources"]["memory"] == {"limit": 1 << 20}
    assert c["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert c["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert c["linux"]["seccomp"]["defaultErrnoRet"] == 1
    assert c["linux"]["seccomp"]["architectures"] == ["SCMP_ARCH_X86_64"]
    # runc/crun get the very profile our own filter is compiled from
    assert parse_profile(c["linux"]["seccomp"], source="oci") == _spec().seccomp
    assert c["hostname"] == "h" and c["root"] == {"path": "/r", "readonly": False}


def test_oci_root_propagation_follows_the_volumes() -> None:
    assert config(_spec())["linux"]["rootfsPropagation"] == "rslave"
    shared = dataclasses.replace(_spec(), mounts=(
        MountPoint("/v", "bind", "/src", ("rbind", "rshared")),))
    assert config(shared)["linux"]["rootfsPropagation"] == "rshared"
