"""Sandboxes and containers on disk: one directory per sandbox under <run_root>/sandboxes,
its containers beneath it; every record a JSON file written atomically."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from engine.errors import InvalidArgument, NotFound
from engine.execdriver.codec import dumps, loads, write_atomic
from engine.execdriver.spec import InitSpec
from engine.graphdriver.base import Mount
from engine.runtime.spec import ContainerConfig, ImageConfig, SandboxConfig
from engine.runtime.state import ContainerState, read_state
from engine.runtime.status import SandboxStatus, Status
from engine.shim import protocol as P


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
    def __init__(self, run_root: Path) -> None:
        self.root = run_root / "sandboxes"
        self.root.mkdir(parents=True, exist_ok=True)

    def sandbox_dir(self, sid: str) -> Path:
        if not sid or "/" in sid or sid.startswith("."):
            raise InvalidArgument(f"invalid sandbox id {sid!r}")
        return self.root / sid

    def save_sandbox(self, rec: SandboxRecord) -> None:
        write_atomic(self.sandbox_dir(rec.id) / "sandbox.json", dumps(rec))

    def load_sandbox(self, sid: str) -> SandboxRecord:
        try:
            return loads(SandboxRecord, (self.sandbox_dir(sid) / "sandbox.json").read_text())
        except FileNotFoundError as e:
            raise NotFound(f"sandbox {sid} not found") from e

    def sandbox_ids(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob("*/sandbox.json"))

    def container_dir(self, sid: str, cid: str) -> Path:
        return P.container_dir(self.sandbox_dir(sid), cid)

    def save_container(self, rec: ContainerRecord) -> None:
        write_atomic(self.container_dir(rec.sandbox_id, rec.id) / "container.json", dumps(rec))

    def find_container(self, cid: str) -> Path:
        if not cid or "/" in cid or cid.startswith(".") or "*" in cid:
            raise InvalidArgument(f"invalid container id {cid!r}")
        found = list(self.root.glob(f"*/{P.CONTAINERS}/{cid}/container.json"))
        if not found:
            raise NotFound(f"container {cid} not found")
        return found[0]

    def load_container(self, cid: str) -> ContainerRecord:
        try:
            return loads(ContainerRecord, self.find_container(cid).read_text())
        except FileNotFoundError as e:
            raise NotFound(f"container {cid} not found") from e

    def containers(self, sid: str | None = None) -> list[ContainerRecord]:
        """Every container record (of one sandbox), read in one directory walk."""
        out = []
        for path in sorted(self.root.glob(f"{sid or '*'}/{P.CONTAINERS}/*/container.json")):
            try:
                out.append(loads(ContainerRecord, path.read_text()))
            except FileNotFoundError:
                continue  # removed meanwhile
        return out

    def container_ids(self, sid: str | None = None) -> list[str]:
        pattern = f"{sid or '*'}/{P.CONTAINERS}/*/container.json"
        return sorted(p.parent.name for p in self.root.glob(pattern))

    def state(self, rec: ContainerRecord) -> ContainerState:
        try:
            return read_state(P.state_path(self.sandbox_dir(rec.sandbox_id), rec.id))
        except NotFound:
            return ContainerState(status=Status.UNKNOWN, created_at=rec.created_at)

    def resolve(self, prefix: str, ids: list[str], *, what: str) -> str:
        """A full ID from a unique prefix (as crictl and docker accept)."""
        if prefix in ids:
            return prefix
        matches = [i for i in ids if i.startswith(prefix)] if prefix else []
        if len(matches) != 1:
            raise NotFound(f"{what} {prefix!r} not found" if not matches
                           else f"{what} prefix {prefix!r} is ambiguous")
        return matches[0]

    def remove_sandbox_dir(self, sid: str) -> None:
        shutil.rmtree(self.sandbox_dir(sid), ignore_errors=True)

    def remove_container_dir(self, sid: str, cid: str) -> None:
        shutil.rmtree(self.container_dir(sid, cid), ignore_errors=True)
