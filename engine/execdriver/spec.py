"""What an exec driver is asked to run: a fully resolved container (no image lookups left).

The runtime builds an InitSpec; `native` hands it to the nsexec helper as JSON, `runc`
translates it into an OCI bundle config.json.
"""
from __future__ import annotations

import dataclasses

from engine.cgroups.base import Resources

NAMESPACE_TYPES = ("mnt", "pid", "net", "ipc", "uts", "user")


@dataclasses.dataclass(frozen=True)
class Namespace:
    type: str  # one of NAMESPACE_TYPES
    path: str = ""  # "" = a new namespace; else join the nsfs file


@dataclasses.dataclass(frozen=True)
class IDMapping:
    """One range of a user namespace's uid or gid map: container ids
    [container_id, container_id + size) are host ids [host_id, host_id + size)."""

    container_id: int
    host_id: int
    size: int


@dataclasses.dataclass(frozen=True)
class MountPoint:
    destination: str  # absolute path inside the container
    type: str  # "bind", "tmpfs", "proc", "sysfs", "devpts", "mqueue"
    source: str
    options: tuple[str, ...] = ()  # OCI options: ro, nosuid, nodev, noexec, rbind,
    # rprivate/rslave/rshared, mode=..., size=...


@dataclasses.dataclass(frozen=True)
class User:
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Capabilities:
    bounding: tuple[str, ...] = ()
    effective: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SeccompArg:
    index: int
    value: int
    value_two: int = 0
    op: str = "SCMP_CMP_EQ"  # SCMP_CMP_EQ | SCMP_CMP_NE | SCMP_CMP_MASKED_EQ


@dataclasses.dataclass(frozen=True)
class SeccompRule:
    names: tuple[str, ...]
    action: str  # SCMP_ACT_ALLOW | SCMP_ACT_ERRNO | SCMP_ACT_KILL | SCMP_ACT_KILL_PROCESS | ...
    errno: int = 1  # for SCMP_ACT_ERRNO
    args: tuple[SeccompArg, ...] = ()  # all must hold (AND)


@dataclasses.dataclass(frozen=True)
class Seccomp:
    default_action: str
    rules: tuple[SeccompRule, ...] = ()
    default_errno: int = 1


@dataclasses.dataclass(frozen=True)
class Device:
    path: str  # /dev/null
    type: str  # "c"
    major: int
    minor: int
    mode: int = 0o666


@dataclasses.dataclass(frozen=True)
class InitSpec:
    id: str
    rootfs: str  # a directory on the host, already mounted
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: User = User()
    hostname: str = ""
    readonly_rootfs: bool = False
    terminal: bool = False
    namespaces: tuple[Namespace, ...] = ()
    mounts: tuple[MountPoint, ...] = ()
    devices: tuple[Device, ...] = ()
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    capabilities: Capabilities = Capabilities()
    no_new_privileges: bool = False
    seccomp: Seccomp | None = None
    cgroup_path: str = ""  # relative to the hierarchy root; "" = do not move
    resources: Resources = dataclasses.field(default_factory=Resources)
    oom_score_adj: int = 0
    privileged: bool = False
    # the maps of the user namespace the container joins (its Namespace("user", path));
    # empty = the host's user namespace
    uid_mappings: tuple[IDMapping, ...] = ()
    gid_mappings: tuple[IDMapping, ...] = ()

    def namespace(self, ns_type: str) -> Namespace | None:
        return next((n for n in self.namespaces if n.type == ns_type), None)


DEFAULT_DEVICES = (
    Device("/dev/null", "c", 1, 3), Device("/dev/zero", "c", 1, 5),
    Device("/dev/full", "c", 1, 7), Device("/dev/random", "c", 1, 8),
    Device("/dev/urandom", "c", 1, 9), Device("/dev/tty", "c", 5, 0),
)
# The device cgroup rules matching DEFAULT_DEVICES plus /dev/pts/* and /dev/ptmx.
DEFAULT_DEVICE_RULES = ("c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                        "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm")
