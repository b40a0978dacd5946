"""OCI mount options -> mount(2) flags, and a safe join of container paths onto the rootfs."""
from __future__ import annotations

import os

from engine.errors import InvalidArgument
from engine.sys import linux as L

FLAGS = {
    "ro": L.MS_RDONLY, "nosuid": L.MS_NOSUID, "nodev": L.MS_NODEV, "noexec": L.MS_NOEXEC,
    "noatime": L.MS_NOATIME, "nodiratime": L.MS_NODIRATIME, "relatime": L.MS_RELATIME,
    "strictatime": L.MS_STRICTATIME, "bind": L.MS_BIND, "rbind": L.MS_BIND | L.MS_REC,
}
CLEAR = {"rw", "suid", "dev", "exec", "atime", "diratime", "defaults"}
PROPAGATION = {
    "private": L.MS_PRIVATE, "rprivate": L.MS_PRIVATE | L.MS_REC,
    "slave": L.MS_SLAVE, "rslave": L.MS_SLAVE | L.MS_REC,
    "shared": L.MS_SHARED, "rshared": L.MS_SHARED | L.MS_REC,
    "unbindable": L.MS_UNBINDABLE, "runbindable": L.MS_UNBINDABLE | L.MS_REC,
}


def parse(options: tuple[str, ...]) -> tuple[int, int, str]:
    """(flags, propagation flags, data string) for a mount's OCI options."""
    flags = propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in FLAGS:
            flags |= FLAGS[opt]
        elif opt in PROPAGATION:
            propagation = PROPAGATION[opt]
        elif opt in CLEAR:
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
