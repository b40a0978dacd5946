"""overlay: each layer unpacked once into its own directory; a rootfs is an overlay mount
of the parents' directories (read-only lowers, nearest first) plus its own upper dir."""
from __future__ import annotations

from pathlib import Path

from engine.graphdriver.base import Kind, Mount
from engine.graphdriver.common import DriverBase
from engine.graphdriver.unpack import Whiteouts

# Like containerd: with the inodes index off, layers shared by many mounts never trip
# overlay's "upper/lower already in use" checks, whatever the kernel's default is.
_INDEX_OFF = ("index=off",) if Path("/sys/module/overlay/parameters/index").exists() else ()


class OverlayDriver(DriverBase):
    name = "overlay"
    whiteouts = Whiteouts.OVERLAY

    def _make(self, target: Path, parents: list[int]) -> None:
        (target / "fs").mkdir()
        (target / "work").mkdir()

    def _mounts(self, sid: int, parents: list[int], kind: Kind) -> list[Mount]:
        own = self.meta.path(sid)
        if not parents:
            opts = ("rw", "rbind") if kind is Kind.ACTIVE else ("ro", "rbind")
            return [Mount("bind", str(own / "fs"), opts)]
        lowers = ":".join(str(self.meta.path(p) / "fs") for p in parents)
        if kind is Kind.VIEW:
            if len(parents) == 1:
                return [Mount("bind", lowers, ("ro", "rbind"))]
            return [Mount("overlay", "overlay", ("ro", *_INDEX_OFF, f"lowerdir={lowers}"))]
        return [Mount("overlay", "overlay", (
            *_INDEX_OFF, f"workdir={own / 'work'}", f"upperdir={own / 'fs'}",
            f"lowerdir={lowers}"))]
