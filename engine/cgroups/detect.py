"""Pick the cgroup manager for this host."""
from __future__ import annotations

from pathlib import Path

from engine.cgroups.base import CgroupManager
from engine.cgroups.v1 import CgroupV1
from engine.cgroups.v2 import CgroupV2


def manager(root: Path = Path("/sys/fs/cgroup")) -> CgroupManager:
    """v2 when the root is the unified hierarchy, else v1 (hybrid hosts count as v1)."""
    if (root / "cgroup.controllers").exists():
        return CgroupV2(root)
    return CgroupV1(root)
