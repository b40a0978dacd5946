"""Stats from cgroups (CPU ns, memory working set and RSS) and the writable layer's usage."""
from __future__ import annotations

import dataclasses
import os

from engine.cgroups.base import CgroupManager, CgroupStats
from engine.runtime.store import ContainerRecord


@dataclasses.dataclass(frozen=True)
class Stats:
    timestamp: int
    cgroup: CgroupStats
    writable_layer_bytes: int
    writable_layer_inodes: int


def tree_usage(path: str) -> tuple[int, int]:
    """(bytes, inodes) of a directory tree, not crossing mount points."""
    total = inodes = 0
    try:
        dev = os.lstat(path).st_dev
    except FileNotFoundError:
        return 0, 0
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(root, d)).st_dev == dev]
        for name in (*dirs, *files):
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            total += st.st_blocks * 512
            inodes += 1
    return total, inodes


def writable_layer(rec: ContainerRecord) -> str:
    """The upper dir of an overlay rootfs, the bind source of a bind rootfs, or the dir."""
    for m in rec.rootfs_mounts:
        for opt in m.options:
            if opt.startswith("upperdir="):
                return opt.split("=", 1)[1]
        if m.type == "bind":
            return m.source
    return rec.spec.rootfs


def container_stats(cgroups: CgroupManager, rec: ContainerRecord, *, now: int) -> Stats:
    used, inodes = tree_usage(writable_layer(rec))
    return Stats(timestamp=now, cgroup=cgroups.stats(rec.spec.cgroup_path),
                 writable_layer_bytes=used, writable_layer_inodes=inodes)
