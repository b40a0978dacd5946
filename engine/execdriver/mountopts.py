"""OCI mount options -> mount(2) flags, and a safe join of container paths onto the rootfs."""
from __future__ import annotations

import os
from collections.abc import Iterable

from engine.errors import InvalidArgument
from engine.sys import linux as L

FLAGS = {
    "ro": L.MS_RDONLY, "nosuid": L.MS_NOSUID, "nodev": L.MS_NODEV, "noexec": L.MS_NOEXEC,
    "noatime": L.MS_NOATIME, "nodiratime": L.MS_NODIRATIME, "relatime": L.MS_RELATIME,
    "strictatime": L.MS_STRICTATIME, "bind": L.MS_BIND, "rbind": L.MS_BIND | L.MS_REC,
}
CLEAR = {"rw", "suid", "dev", "exec", "atime", "diratime", "defaults"}
# Applied to the mount and every submount with mount_setattr(2) after mounting (runc/crun
# take the same option name).
RECURSIVE_READONLY = "rro"
PROPAGATION = {
    "private": L.MS_PRIVATE, "rprivate": L.MS_PRIVATE | L.MS_REC,
    "slave": L.MS_SLAVE, "rslave": L.MS_SLAVE | L.MS_REC,
    "shared": L.MS_SHARED, "rshared": L.MS_SHARED | L.MS_REC,
    "unbindable": L.MS_UNBINDABLE, "runbindable": L.MS_UNBINDABLE | L.MS_REC,
}


def root_propagation(mount_options: Iterable[tuple[str, ...]]) -> str:
    """The propagation of the container's root mount tree (OCI `rootfsPropagation`):
    "rshared" when a mount is bidirectional (a mount made inside the container must reach
    the host through the source's peer group, which an rslave root would cut), otherwise
    "rslave" (host mounts still propagate in, nothing propagates out)."""
    shared = any(opt in ("shared", "rshared") for opts in mount_options for opt in opts)
    return "rshared" if shared else "rslave"


def mount_point_of(path: str, mountinfo: str) -> tuple[str, bool]:
    """(mount point, shared?) of the mount holding `path`, from a /proc/<pid>/mountinfo
    text; the last mount listed on the longest matching point is the visible one."""
    best, shared = "/", False
    for line in mountinfo.splitlines():
        fields = line.split()
        point = fields[4].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            sep = fields.index("-")
            best, shared = point, any(f.startswith("shared:") for f in fields[6:sep])
    return best, shared


def parse(options: tuple[str, ...]) -> tuple[int, int, str]:
    """(flags, propagation flags, data string) for a mount's OCI options."""
    flags = propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in FLAGS:
            flags |= FLAGS[opt]
        elif opt in PROPAGATION:
            propagation = PROPAGATION[opt]
        elif opt in CLEAR or opt == RECURSIVE_READONLY:
            continue
        else:
            data.append(opt)
    return flags, propagation, ",".join(data)


def secure_target(rootfs: str, destination: str) -> str:
    """The host path for `destination` inside `rootfs`, refusing anything that resolves
    (through symlinks or "..") outside the rootfs."""
    if not destination.startswith("/"):
        raise InvalidArgument(f"path {destination!r} must be absolute")
    root = os.path.realpath(rootfs)
    candidate = os.path.join(root, destination.lstrip("/"))
    resolved = os.path.realpath(candidate)
    if resolved != root and not resolved.startswith(root + os.sep):
        raise InvalidArgument(
            f"{destination} resolves to {resolved}, outside the container rootfs")
    return resolved
