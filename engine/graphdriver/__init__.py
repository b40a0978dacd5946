"""Graph drivers: image and container filesystems as snapshots (overlay, vfs)."""
from __future__ import annotations

from pathlib import Path

from engine.errors import InvalidArgument
from engine.graphdriver.base import GraphDriver

DRIVERS = ("overlay", "vfs")


def new_driver(name: str, root: Path) -> GraphDriver:
    """The driver `name` keeping its state under `root` (overlay is the default)."""
    if name == "overlay":
        from engine.graphdriver.overlay import OverlayDriver
        return OverlayDriver(root)
    if name == "vfs":
        from engine.graphdriver.vfs import VfsDriver
        return VfsDriver(root)
    raise InvalidArgument(f"unknown graph driver {name!r} (known: {', '.join(DRIVERS)})")
