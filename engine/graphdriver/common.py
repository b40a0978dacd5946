"""What overlay and vfs share: metadata, apply, usage; the drivers differ in layout and mounts."""
from __future__ import annotations

import abc
import time
from collections.abc import Callable
from pathlib import Path

from engine.errors import FailedPrecondition
from engine.graphdriver.base import Info, Kind, Mount, Usage
from engine.graphdriver.meta import SnapshotMeta, disk_usage
from engine.graphdriver.unpack import ApplyStats, Limits, Source, Whiteouts, apply_layer


class DriverBase(abc.ABC):
    name = ""
    whiteouts = Whiteouts.DELETE

    def __init__(self, root: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.meta = SnapshotMeta(root, clock)
        self.meta.repair()

    def fs(self, key: str) -> Path:
        return self.meta.path(self.meta.id_of(key)) / "fs"

    @abc.abstractmethod
    def _mounts(self, sid: int, parents: list[int], kind: Kind) -> list[Mount]:
        """The mounts of snapshot `sid` on `parents` (nearest first)."""

    def _make(self, target: Path, parents: list[int]) -> None:
        (target / "fs").mkdir()

    def _create(self, key: str, parent: str | None, kind: Kind) -> list[Mount]:
        sid = self.meta.create(key, parent, kind, self._make)
        return self._mounts(sid, self.meta.chain(key)[1:], kind)

    def prepare(self, key: str, parent: str | None) -> list[Mount]:
        return self._create(key, parent, Kind.ACTIVE)

    def view(self, key: str, parent: str | None) -> list[Mount]:
        return self._create(key, parent, Kind.VIEW)

    def commit(self, name: str, key: str) -> None:
        self.meta.commit(name, key)

    def mounts(self, key: str) -> list[Mount]:
        info = self.meta.stat(key)
        if info.kind is Kind.COMMITTED:
            raise FailedPrecondition(f"snapshot {key!r} is committed: make a view of it")
        chain = self.meta.chain(key)
        return self._mounts(chain[0], chain[1:], info.kind)

    def remove(self, key: str) -> None:
        self.meta.remove(key)

    def usage(self, key: str) -> Usage:
        size, inodes = disk_usage(self.fs(key))
        return Usage(size=size, inodes=inodes)

    def apply(self, key: str, src: Source, *, limits: Limits | None = None) -> ApplyStats:
        if self.meta.stat(key).kind is not Kind.ACTIVE:
            raise FailedPrecondition(f"snapshot {key!r} is not active: cannot apply a layer")
        return apply_layer(str(self.fs(key)), src, whiteouts=self.whiteouts, limits=limits)

    def stat(self, key: str) -> Info:
        return self.meta.stat(key)

    def walk(self) -> list[Info]:
        return self.meta.walk()

    def close(self) -> None:
        self.meta.close()
