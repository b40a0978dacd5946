"""The engine's containers as the CRI shows them, translated once and reused.

The engine keeps every sandbox and container in memory and learns exits and monitor
deaths from the kernel (engine.runtime.live), so reading it is cheap and always current;
what is left to save is the translation into protobuf messages. This view keeps, per
container, the `ContainerStatus` and `Container` built from its last engine state (reused
while the state is equal), and the unfiltered ListContainers listing, reused while the
runtime's generation (which grows with any change to any container) stays the same.
It holds no state of its own: drop it and the next read builds everything again.

A container's image ID is the one it was created from (as containerd reports it): given
by CreateContainer (`pin_image`), or looked up once by reference after a daemon restart.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from cri.api import runtime_pb2 as pb
from engine.runtime.api import ContainerInfo
from engine.runtime.state import ContainerState
from engine.runtime.store import ContainerRecord


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


class ContainerReads(Protocol):
    """What the view reads from the engine (engine.runtime.api.Runtime)."""

    def generation(self) -> int: ...

    def container_status(self, cid: str) -> ContainerInfo: ...

    def list_containers(self, sid: str | None = None) -> list[ContainerInfo]: ...


Translate = Callable[[ContainerInfo, str], pb.ContainerStatus]  # (info, image ID)
ImageIdOf = Callable[[str], str]  # image reference -> ID ("" when unknown)


class ContainerView:
    def __init__(self, runtime: ContainerReads, *, translate: Translate,
                 image_id_of: ImageIdOf) -> None:
        self._rt = runtime
        self._translate = translate
        self._image_id_of = image_id_of
        self._lock = threading.Lock()
        # container ID -> (record, state, entry) it was built from
        self._memo: dict[str, tuple[ContainerRecord, ContainerState, Entry]] = {}
        self._images: dict[str, str] = {}  # container ID -> image ID
        self._listing: tuple[int, tuple[pb.Container, ...]] | None = None

    def pin_image(self, container_id: str, image_id: str) -> None:
        """The image a new container was created from."""
        with self._lock:
            self._images[container_id] = image_id

    def _image_of(self, rec: ContainerRecord) -> str:
        with self._lock:
            known = self._images.get(rec.id)
        if known is None:
            known = self._image_id_of(rec.config.image)
            with self._lock:
                self._images.setdefault(rec.id, known)
        return known

    def _entry(self, info: ContainerInfo) -> Entry:
        rec, state = info.record, info.state
        with self._lock:
            known = self._memo.get(rec.id)
        if known is not None and known[0] is rec and known[1] == state:
            return known[2]
        e = entry(self._translate(info, self._image_of(rec)), sandbox_id=rec.sandbox_id,
                  pid=state.pid)
        with self._lock:
            self._memo[rec.id] = (rec, state, e)
        return e

    # -- reads -------------------------------------------------------------------------------
    def status(self, container_id: str) -> Entry:
        """The container with this ID (or unique ID prefix); NotFound when there is none."""
        return self._entry(self._rt.container_status(container_id))

    def entries(self, sandbox_id: str | None = None) -> list[Entry]:
        """Every container (of one sandbox), current."""
        infos = self._rt.list_containers(sandbox_id)
        out = [self._entry(info) for info in infos]
        if sandbox_id is None:
            self._prune({info.record.id for info in infos})
        return out

    def containers(self) -> Sequence[pb.Container]:
        """The unfiltered listing; the same object while nothing changed."""
        gen = self._rt.generation()  # before the reads: a change after it shows next time
        with self._lock:
            if self._listing is not None and self._listing[0] == gen:
                return self._listing[1]
        listing = tuple(e.container for e in self.entries())
        with self._lock:
            self._listing = (gen, listing)
        return listing

    def _prune(self, present: set[str]) -> None:
        """Forget containers that are gone (a full listing saw them missing)."""
        with self._lock:
            for cid in [c for c in self._memo if c not in present]:
                del self._memo[cid]
            for cid in [c for c in self._images if c not in present]:
                del self._images[cid]
