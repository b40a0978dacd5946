"""The small interface every graph driver implements, in containerd snapshotter terms.

A *committed* snapshot is a read-only layer (named by its chain ID); an *active* snapshot
is a writable view on top of a committed parent (a container rootfs, or a layer being
unpacked); a *view* is a read-only one. Keys are chosen by the caller and unique across
all kinds. Layers are unpacked with `prepare(tmp, parent)` -> `apply(tmp, tar)` ->
`commit(chain_id, tmp)`.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Protocol

from engine.graphdriver.unpack import ApplyStats, Limits, Source


@dataclasses.dataclass(frozen=True)
class Mount:
    """One mount(2) call: `mount -t <type> -o <options> <source> <target>`."""

    type: str
    source: str
    options: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Usage:
    size: int  # bytes
    inodes: int


class Kind(enum.Enum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


@dataclasses.dataclass(frozen=True)
class Info:
    key: str
    parent: str | None
    kind: Kind
    created: float  # unix time


class GraphDriver(Protocol):
    name: str

    def prepare(self, key: str, parent: str | None) -> list[Mount]:
        """Create an active, writable snapshot `key` on top of committed `parent`."""
        ...

    def view(self, key: str, parent: str | None) -> list[Mount]:
        """Create an active, read-only snapshot `key` on top of committed `parent`."""
        ...

    def commit(self, name: str, key: str) -> None:
        """Turn active snapshot `key` into committed snapshot `name`."""
        ...

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an existing active snapshot or view."""
        ...

    def remove(self, key: str) -> None:
        """Remove a snapshot; a committed one only when nothing builds on it."""
        ...

    def usage(self, key: str) -> Usage:
        """Disk used by the snapshot's own layer (not its parents)."""
        ...

    def apply(self, key: str, src: Source, *, limits: Limits | None = None) -> ApplyStats:
        """Unpack an uncompressed layer tar into active snapshot `key` (whiteouts converted)."""
        ...

    def stat(self, key: str) -> Info:
        """The snapshot `key`, or NotFound."""
        ...

    def walk(self) -> list[Info]:
        """Every snapshot."""
        ...

    def close(self) -> None:
        """Release the metadata database."""
        ...
