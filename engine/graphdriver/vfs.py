"""vfs: every snapshot is a full copy of its parent (for filesystems without overlay).

The copy is `cp -a` (GNU coreutils) so that hardlinks, device nodes, ownership, modes,
times and xattrs survive exactly; whiteouts in layers become plain deletions."""
from __future__ import annotations

import subprocess
from pathlib import Path

from engine.errors import Unavailable
from engine.graphdriver.base import Kind, Mount
from engine.graphdriver.common import DriverBase
from engine.graphdriver.unpack import Whiteouts


class VfsDriver(DriverBase):
    name = "vfs"
    whiteouts = Whiteouts.DELETE

    def _make(self, target: Path, parents: list[int]) -> None:
        fs = target / "fs"
        if not parents:
            fs.mkdir()
            return
        src = self.meta.path(parents[0]) / "fs"
        proc = subprocess.run(["cp", "-a", "--", f"{src}/.", str(fs)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise Unavailable(f"vfs: copying {src} failed: {proc.stderr.strip()}")

    def _mounts(self, sid: int, parents: list[int], kind: Kind) -> list[Mount]:
        mode = "rw" if kind is Kind.ACTIVE else "ro"
        return [Mount("bind", str(self.meta.path(sid) / "fs"), (mode, "rbind"))]
