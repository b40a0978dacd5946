"""Sandboxes and containers on disk: one directory per sandbox under <run_root>/sandboxes,
its containers beneath it; every record a JSON file written atomically.

The store also keeps every record in memory: it reads the disk once when made (the
recovery after a daemon restart), and every later record change goes through its `save_*`
and `remove_*`, so lookups and listings never walk the directories. One Store (one
Runtime) owns a run root. Container states and monitor lives change without us; the
`LiveState` keeps those (see engine.runtime.live) and `sync()` brings it up to date.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from pathlib import Path

from engine.errors import InvalidArgument, NotFound
from engine.execdriver.codec import dumps, loads, write_atomic
from engine.execdriver.spec import InitSpec
from engine.graphdriver.base import Mount
from engine.runtime.live import LiveState
from engine.runtime.spec import ContainerConfig, ImageConfig, SandboxConfig
from engine.runtime.state import ContainerState
from engine.runtime.status import SandboxStatus
from engine.runtime.trash import Trash
from engine.runtime.watch import ChangeWatch
from engine.shim import protocol as P

RECORD_MODE = 0o644  # as the records have always been written (umask 022)


@dataclasses.dataclass(frozen=True)
class SandboxRecord:
    id: str
    config: SandboxConfig
    created_at: int
    cgroup_path: str
    driver: str
    runtime_binary: str = ""
    ips: tuple[str, ...] = ()
    network_attached: bool = False
    state: str = SandboxStatus.READY.value
    network_released: bool = False
    """StopPodSandbox detached the network (CNI DEL done): RemovePodSandbox must not call
    DEL again. False after a run() that failed half-way, whose teardown must try DEL."""


@dataclasses.dataclass(frozen=True)
class ContainerRecord:
    id: str
    sandbox_id: str
    config: ContainerConfig
    image: ImageConfig
    spec: InitSpec
    log_path: str
    created_at: int
    rootfs_mounts: tuple[Mount, ...] = ()  # mounted by us at <container dir>/rootfs


class Store:
    def __init__(self, run_root: Path, *, live: LiveState | None = None) -> None:
        self.root = run_root / "sandboxes"
        self.root.mkdir(parents=True, exist_ok=True)
        self.live = live or LiveState(ChangeWatch())
        self.trash = Trash(run_root / "removing")
        self._lock = threading.RLock()
        self._sandboxes: dict[str, SandboxRecord] = {}
        self._containers: dict[str, ContainerRecord] = {}
        self._members: dict[str, set[str]] = {}  # sandbox ID -> its container IDs
        self._settling: set[str] = set()  # sandboxes being made (never ready yet)
        self._dirs: dict[str, Path] = {}  # sandbox ID -> directory, for the known ones
        self._load()

    def close(self) -> None:
        self.live.close()
        self.trash.close()

    def _load(self) -> None:
        for path in sorted(self.root.glob("*/sandbox.json")):
            with contextlib.suppress(FileNotFoundError):
                self._index_sandbox(loads(SandboxRecord, path.read_text()))
        for path in sorted(self.root.glob(f"*/{P.CONTAINERS}/*/container.json")):
            if path.parent.parent.parent.name not in self._sandboxes:
                continue  # a sandbox directory without its record: not ours to show
            with contextlib.suppress(FileNotFoundError):
                self._index_container(loads(ContainerRecord, path.read_text()))

    def _index_sandbox(self, rec: SandboxRecord) -> None:
        if rec.id not in self._dirs:
            self._dirs[rec.id] = self.sandbox_dir(rec.id)
        self._sandboxes[rec.id] = rec
        self._members.setdefault(rec.id, set())

    def _index_container(self, rec: ContainerRecord) -> None:
        if rec.id not in self._containers:
            self.live.track(rec.id, self.container_dir(rec.sandbox_id, rec.id))
        self._containers[rec.id] = rec
        self._members.setdefault(rec.sandbox_id, set()).add(rec.id)

    def sync(self) -> int:
        """Take in what changed without us (see LiveState.sync); returns the generation."""
        return self.live.sync()

    # -- sandboxes --------------------------------------------------------------------------
    def sandbox_dir(self, sid: str) -> Path:
        known = self._dirs.get(sid)
        if known is not None:
            return known
        if not sid or "/" in sid or sid.startswith("."):
            raise InvalidArgument(f"invalid sandbox id {sid!r}")
        return self.root / sid

    def save_sandbox(self, rec: SandboxRecord) -> None:
        write_atomic(self.sandbox_dir(rec.id) / "sandbox.json", dumps(rec), mode=RECORD_MODE)
        with self._lock:
            if rec.state == SandboxStatus.READY.value:
                self._settling.discard(rec.id)
            elif rec.id not in self._sandboxes:
                self._settling.add(rec.id)
            self._index_sandbox(rec)
        self.live.bump()

    def load_sandbox(self, sid: str) -> SandboxRecord:
        with self._lock:
            rec = self._sandboxes.get(sid)
        if rec is None:
            raise NotFound(f"sandbox {sid} not found")
        return rec

    def sandbox_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._sandboxes)

    def sandboxes(self) -> list[SandboxRecord]:
        with self._lock:
            return [self._sandboxes[sid] for sid in sorted(self._sandboxes)]

    def monitor_alive(self, sid: str) -> bool:
        known = self.live.known_monitor(sid)
        if known is not None:
            return known
        with self._lock:
            settled = sid not in self._settling
        return self.live.monitor_alive(sid, self.sandbox_dir(sid), settled=settled)

    # -- containers -------------------------------------------------------------------------
    def container_dir(self, sid: str, cid: str) -> Path:
        return P.container_dir(self.sandbox_dir(sid), cid)

    def save_container(self, rec: ContainerRecord) -> None:
        with self._lock:
            if rec.sandbox_id not in self._sandboxes:
                raise NotFound(f"sandbox {rec.sandbox_id} not found")
        write_atomic(self.container_dir(rec.sandbox_id, rec.id) / "container.json",
                     dumps(rec), mode=RECORD_MODE)
        with self._lock:
            self._index_container(rec)
        self.live.bump()

    @staticmethod
    def _check_container_id(cid: str) -> None:
        if not cid or "/" in cid or cid.startswith(".") or "*" in cid:
            raise InvalidArgument(f"invalid container id {cid!r}")

    def sandbox_of(self, cid: str) -> str:
        return self.load_container(cid).sandbox_id

    def find_container(self, cid: str) -> Path:
        """The container's record file."""
        rec = self.load_container(cid)
        return self.container_dir(rec.sandbox_id, cid) / "container.json"

    def load_container(self, cid: str) -> ContainerRecord:
        self._check_container_id(cid)
        with self._lock:
            rec = self._containers.get(cid)
        if rec is None:
            raise NotFound(f"container {cid} not found")
        return rec

    def containers(self, sid: str | None = None) -> list[ContainerRecord]:
        """Every container record (of one sandbox), ordered by sandbox and ID."""
        with self._lock:
            if sid is not None:
                return [self._containers[c] for c in sorted(self._members.get(sid, ()))]
            return sorted(self._containers.values(), key=lambda r: (r.sandbox_id, r.id))

    def container_ids(self, sid: str | None = None) -> list[str]:
        return [rec.id for rec in self.containers(sid)]

    def state(self, rec: ContainerRecord) -> ContainerState:
        """The container's current state."""
        self.sync()
        return self.known_state(rec)

    def known_state(self, rec: ContainerRecord) -> ContainerState:
        """The container's state as of the last `sync()` (for reads of many containers
        that sync once)."""
        return self.live.state(rec.id, self.sandbox_dir(rec.sandbox_id),
                               created_at=rec.created_at)

    # -- IDs --------------------------------------------------------------------------------
    def resolve(self, prefix: str, ids: list[str], *, what: str) -> str:
        """A full ID from a unique prefix (as crictl and docker accept)."""
        if prefix in ids:
            return prefix
        matches = [i for i in ids if i.startswith(prefix)] if prefix else []
        if len(matches) != 1:
            raise NotFound(f"{what} {prefix!r} not found" if not matches
                           else f"{what} prefix {prefix!r} is ambiguous")
        return matches[0]

    def resolve_sandbox(self, prefix: str) -> str:
        with self._lock:
            if prefix in self._sandboxes:
                return prefix
            ids = list(self._sandboxes)
        return self.resolve(prefix, ids, what="sandbox")

    def resolve_container(self, prefix: str) -> str:
        with self._lock:
            if prefix in self._containers:
                return prefix
            ids = list(self._containers)
        return self.resolve(prefix, ids, what="container")

    # -- removal ----------------------------------------------------------------------------
    def remove_sandbox_dir(self, sid: str) -> None:
        d = self.sandbox_dir(sid)
        with self._lock:
            for cid in self._members.pop(sid, set()):
                self._containers.pop(cid, None)
                self.live.forget(cid)
            self._sandboxes.pop(sid, None)
            self._dirs.pop(sid, None)
            self._settling.discard(sid)
        self.live.forget_sandbox(sid)
        self.trash.discard(d)

    def remove_container_dir(self, sid: str, cid: str) -> None:
        d = self.container_dir(sid, cid)
        with self._lock:
            if self._containers.get(cid) is not None and self._containers[cid].sandbox_id == sid:
                del self._containers[cid]
            self._members.get(sid, set()).discard(cid)
        self.live.forget(cid)
        self.trash.discard(d)
