"""An in-memory view of every container's CRI status, so reads need not walk the disk.

Reading one container through the engine costs a directory walk over every sandbox and a
few JSON files (tens of milliseconds with 110 pods); ListContainers paid that per
container. The view keeps the translated `ContainerStatus` and `Container` of each
container and answers ListContainers and ContainerStatus from memory.

How it stays right:
- Every CRI verb that changes a container (create, start, stop, remove, and the sandbox
  verbs for the containers in them) `invalidate`s or `forget`s it when the verb has
  finished. An invalidated container is read through the engine on its next read, and
  each load applies only to containers not invalidated after that load began: every
  invalidation bumps a generation, a load remembers the generation it started at. So a
  read never returns a state older than a verb that already answered.
- Changes nobody asked for (a process exiting on its own, a monitor dying) are seen by
  the periodic full `refresh` (the exit watcher's scan, every second in engined), so such
  a change shows in ContainerStatus and ListContainers within one scan: the same moment
  GetContainerEvents reports it, since both come from that scan. Should the scans stop
  or fall behind, a read finding the last full load older than `max_age_s` does one
  itself first: the staleness of unasked-for changes stays bounded.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from cri.api import runtime_pb2 as pb
from engine.errors import NotFound

MAX_TOMBSTONES = 4096


@dataclasses.dataclass(frozen=True)
class Entry:
    """One container as the CRI shows it."""

    sandbox_id: str
    status: pb.ContainerStatus
    container: pb.Container
    pid: int


def entry(status: pb.ContainerStatus, *, sandbox_id: str, pid: int) -> Entry:
    return Entry(sandbox_id=sandbox_id, status=status, pid=pid, container=pb.Container(
        id=status.id, pod_sandbox_id=sandbox_id, metadata=status.metadata,
        image=status.image, image_ref=status.image_ref, image_id=status.image_id,
        state=status.state, created_at=status.created_at, labels=status.labels,
        annotations=status.annotations))


LoadAll = Callable[[], Iterable[Entry]]
LoadOne = Callable[[str], Entry]  # raises NotFound


class ContainerView:
    def __init__(self, *, load_all: LoadAll, load_one: LoadOne, max_age_s: float = 3.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load_all = load_all
        self._load_one = load_one
        self._max_age_s = max_age_s
        self._clock = clock
        self._scanned_at: float | None = None
        self._refreshing = threading.Lock()
        self._lock = threading.Lock()
        self._gen = 0
        self._entries: dict[str, Entry] = {}
        self._stamp: dict[str, int] = {}  # container ID -> generation its entry was read at
        self._dirty: dict[str, int] = {}  # container ID -> generation of its invalidation
        self._gone: dict[str, int] = {}  # removed container ID -> generation of removal
        self._sandbox_dirty: dict[str, int] = {}  # sandbox ID -> generation
        self._listing: tuple[pb.Container, ...] | None = None

    # -- what the verbs report -------------------------------------------------------------
    def generation(self) -> int:
        """Take this before a load; hand it to `apply`."""
        with self._lock:
            return self._gen

    def invalidate(self, container_id: str) -> None:
        with self._lock:
            self._gen += 1
            self._dirty[container_id] = self._gen
            self._listing = None

    def invalidate_sandbox(self, sandbox_id: str) -> None:
        with self._lock:
            self._gen += 1
            self._sandbox_dirty[sandbox_id] = self._gen
            for cid, e in self._entries.items():
                if e.sandbox_id == sandbox_id:
                    self._dirty[cid] = self._gen
            self._listing = None

    def forget(self, container_id: str) -> None:
        with self._lock:
            self._gen += 1
            self._drop(container_id)
            self._gone[container_id] = self._gen
            if len(self._gone) > MAX_TOMBSTONES:  # loads in flight are far younger
                for old in sorted(self._gone, key=self._gone.__getitem__)[:len(self._gone) // 2]:
                    del self._gone[old]
            self._listing = None

    # -- loads -------------------------------------------------------------------------------
    def _drop(self, cid: str) -> None:
        self._entries.pop(cid, None)
        self._stamp.pop(cid, None)
        self._dirty.pop(cid, None)

    def _newer_than(self, cid: str, sandbox_id: str, gen: int) -> bool:
        """Whether something happened to this container after a load that began at `gen`."""
        return (self._stamp.get(cid, -1) > gen or self._dirty.get(cid, -1) > gen
                or self._gone.get(cid, -1) > gen
                or self._sandbox_dirty.get(sandbox_id, -1) > gen)

    def apply(self, loaded: Iterable[Entry], *, gen: int, sandbox_id: str | None = None,
              complete: bool = True) -> None:
        """Record what a load that began at `gen` read: all containers (`sandbox_id` None)
        or those of one sandbox. With `complete`, containers of that scope the load did
        not see are gone, unless something newer is known about them."""
        with self._lock:
            seen = set()
            changed = False
            for e in loaded:
                cid = e.status.id
                seen.add(cid)
                if self._newer_than(cid, e.sandbox_id, gen):
                    continue  # not ours to say: a later verb or load knows better
                changed = changed or self._entries.get(cid) is not e
                self._entries[cid] = e
                self._stamp[cid] = gen
                self._dirty.pop(cid, None)
            if complete:
                for cid, e in list(self._entries.items()):
                    if cid in seen or (sandbox_id is not None and e.sandbox_id != sandbox_id):
                        continue
                    if not self._newer_than(cid, e.sandbox_id, gen):
                        self._drop(cid)
                        changed = True
            if sandbox_id is None and complete:
                self._sandbox_dirty = {s: g for s, g in self._sandbox_dirty.items() if g > gen}
            if changed:  # an unchanged load keeps the listing (and the answers built on it)
                self._listing = None

    def refresh(self) -> list[Entry]:
        """A full load (the periodic scan); returns what it read."""
        with self._refreshing:
            return self._refresh_locked()

    def _refresh_locked(self) -> list[Entry]:
        started = self._clock()
        gen = self.generation()
        loaded = list(self._load_all())
        self.apply(loaded, gen=gen)
        with self._lock:
            self._scanned_at = started
        return loaded

    def _stale(self) -> bool:
        with self._lock:
            at = self._scanned_at
        return at is None or self._clock() - at > self._max_age_s

    def _fresh_enough(self) -> None:
        if not self._stale():
            return
        with self._refreshing:  # one stale reader loads; the others wait for it
            if self._stale():
                self._refresh_locked()

    def _read_through(self, container_id: str) -> Entry:
        gen = self.generation()
        try:
            e = self._load_one(container_id)
        except NotFound:
            with self._lock:
                known = self._entries.get(container_id)
                if known is not None and not self._newer_than(container_id, known.sandbox_id,
                                                               gen):
                    self._drop(container_id)
                    self._listing = None
            raise
        self.apply([e], gen=gen, complete=False)
        return e

    # -- reads -------------------------------------------------------------------------------
    def status(self, container_id: str) -> Entry:
        """The container with this ID (or unique ID prefix); NotFound when there is none."""
        self._fresh_enough()
        with self._lock:
            e = self._entries.get(container_id)
            if e is not None and container_id not in self._dirty:
                return e
        return self._read_through(container_id)  # a prefix, a new or a changed container

    def containers(self) -> Sequence[pb.Container]:
        self._fresh_enough()
        with self._lock:
            dirty = list(self._dirty)
            if not dirty and self._listing is not None:
                return self._listing
        for cid in dirty:
            with contextlib.suppress(NotFound):  # gone: _read_through dropped it
                self._read_through(cid)
        with self._lock:
            if self._listing is None:
                self._listing = tuple(e.container for _, e in sorted(
                    self._entries.items(), key=lambda kv: (kv[1].sandbox_id, kv[0])))
            return self._listing
