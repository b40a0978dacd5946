"""The small interface every graph driver implements, in containerd snapshotter terms.

A *committed* snapshot is a read-only layer (named by its chain ID); an *active* snapshot
is a writable or read-only view on top of a committed parent (a container rootfs).
"""
from __future__ import annotations

import dataclasses
from typing import Protocol


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
        """The mounts of an existing active snapshot."""
        ...

    def remove(self, key: str) -> None:
        """Remove a snapshot; a committed one only when nothing builds on it."""
        ...

    def usage(self, key: str) -> Usage:
        """Disk used by the snapshot's own layer (not its parents)."""
        ...
