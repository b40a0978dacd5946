"""User namespaces for pods (`spec.hostUsers: false`): one block of host IDs per pod.

Each pod that asks for its own user namespace gets a block of `ids_per_pod` host IDs
(KubeletConfiguration `userNamespaces.idsPerPod`, default 65536) from the kubelet's range
(`userns_range`), the same block for UIDs and GIDs, container ID 0 mapped to the block's
first ID. Blocks never overlap and a block is never handed out
twice while a pod holds it; the lowest free block is taken (upstream's bitmap takes a
random free one: either way no overlap, ours is predictable). One lock covers the choice
and the state file, so pod workers and threads can ask at once. The sandbox and every
container of the pod carry the same `NamespaceOption.userns_options` (mode POD); pods
without `hostUsers: false` get mode NODE, as upstream sends it.

Where allocations survive a kubelet restart: a small state file per pod,
`<root-dir>/pods/<uid>/userns` (upstream's name and JSON shape), written atomically and
fsynced before the sandbox is created, read back at start. Not reconstructed from the
runtime: a runtime need not report the options in PodSandboxStatus (our engine does not
today), and the file also covers a kubelet that dies between allocating and a RunPodSandbox
that did create the sandbox. A file that cannot be read back stops the kubelet at start
(as upstream): guessing would risk handing its block out twice. The block is freed when
the pod's sandboxes have been removed (`release`, with the pod directory), and at start for
pods this node no longer has (`prune`).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from cri.api import runtime_pb2 as pb
from kubelet_py.errors import KubeletError
from kubelet_py.pods.model import Pod, pod_uid
from kubelet_py.pods.userns_range import IDS_PER_POD, UNIT, IdRange, UsernsError

log = logging.getLogger(__name__)
MAPPINGS_FILE = "userns"
HOST_NAMESPACES = (("hostNetwork", "hostNetwork"), ("hostPID", "HostPID"),
                   ("hostIPC", "HostIPC"))
"""Pod fields the apiserver forbids with hostUsers: false (and the names its message uses);
checked here too for static pods, which never pass the apiserver."""

Status = Callable[[], Awaitable[pb.StatusResponse]]


def wants_own_userns(pod: Pod) -> bool:
    return pod["spec"].get("hostUsers") is False


def _q(text: str) -> str:
    """Quoted as upstream's messages quote names (Go's %q)."""
    return json.dumps(text)


def _mapping(first: int, length: int) -> dict[str, int]:
    return {"hostId": first, "containerId": 0, "length": length}


class UserNamespaces:
    def __init__(self, *, id_range: IdRange, pods_dir: Path, max_pods: int,
                 status: Status, ids_per_pod: int = IDS_PER_POD) -> None:
        if ids_per_pod % UNIT:
            raise UsernsError(f"kubelet user namespace length {ids_per_pod} is not a "
                              f"multiple of {UNIT}")
        first, length = id_range.first, id_range.length
        if first % ids_per_pod:
            raise UsernsError(f"kubelet user assigned ID {first} is not a multiple of "
                              f"{ids_per_pod}")
        if first < ids_per_pod:  # ID 0 on the host must never be mapped
            raise UsernsError(f"kubelet user assigned ID {first} must be greater or equal "
                              f"to {ids_per_pod}")
        if length % ids_per_pod:
            raise UsernsError(f"kubelet user assigned IDs length {length} is not a "
                              f"multiple of {ids_per_pod}")
        if length // ids_per_pod < max_pods:
            raise UsernsError(f"kubelet user assigned IDs are not enough to support "
                              f"{max_pods} pods")
        self._size = ids_per_pod
        self._first_block = first // ids_per_pod
        self._blocks = length // ids_per_pod
        self._dir = pods_dir
        self._status = status
        self._lock = threading.Lock()
        self._by_pod: dict[str, int] = {}
        """Pod UID -> first host ID of its block."""
        self._used: set[int] = set()
        """Block numbers (first ID // ids_per_pod) in use."""
        self._load()

    # -- persistence --------------------------------------------------------------------

    def _file(self, uid: str) -> Path:
        if not uid or "/" in uid or uid in (".", ".."):
            raise UsernsError(f"pod UID {uid!r} cannot name a directory")
        return self._dir / uid / MAPPINGS_FILE

    def _load(self) -> None:
        if not self._dir.is_dir():
            return
        for path in sorted(self._dir.glob(f"*/{MAPPINGS_FILE}")):
            uid = path.parent.name
            try:
                first = self._parse(json.loads(path.read_text()))
                self._record(uid, first)
            except (OSError, ValueError, UsernsError) as exc:
                raise UsernsError(f"user namespace of pod {uid}: {path}: {exc}") from exc
            log.info("pod %s keeps user namespace block %d+%d", uid, first, self._size)

    def _parse(self, doc: Any) -> int:
        """The first host ID of a mappings file this kubelet wrote; anything else raises."""
        if not isinstance(doc, dict):
            raise UsernsError("invalid user namespace mappings file: not an object")
        uids, gids = doc.get("uidMappings"), doc.get("gidMappings")
        if not isinstance(uids, list) or len(uids) != 1:
            raise UsernsError("invalid user namespace configuration: exactly one UID "
                              "mapping allowed")
        if gids != uids:
            raise UsernsError("invalid user namespace configuration: GID and UID mappings "
                              "should be identical")
        m = uids[0]
        if not isinstance(m, dict) or m.get("containerId") != 0:
            raise UsernsError("invalid user namespace configuration: UID 0 must be mapped")
        first, length = m.get("hostId"), m.get("length")
        if not isinstance(first, int) or length != self._size:
            raise UsernsError(f"wrong user namespace length {length}")
        return first

    def _write(self, uid: str, first: int) -> None:
        path = self._file(uid)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"uidMappings": [_mapping(first, self._size)],
               "gidMappings": [_mapping(first, self._size)]}
        tmp = path.with_name(f".{MAPPINGS_FILE}.tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)  # the rename itself must be durable before the sandbox exists
        finally:
            os.close(fd)

    # -- the allocator (callers hold the lock) ------------------------------------------

    def _record(self, uid: str, first: int) -> None:
        if first % self._size:
            raise UsernsError(f"wrong user namespace offset specified {first}")
        block = first // self._size
        if not self._first_block <= block < self._first_block + self._blocks:
            raise UsernsError(f"id {first} is out of range")
        previous = self._by_pod.get(uid)
        if previous is not None and previous != first:
            raise UsernsError(f"different user namespace range already used by pod {uid}")
        if previous is None and block in self._used:
            raise UsernsError(f"range picked for pod {uid} already taken")
        self._used.add(block)
        self._by_pod[uid] = first

    def _allocate(self, uid: str) -> int:
        """The lowest free block, recorded and persisted for `uid`."""
        if len(self._used) >= self._blocks:
            raise UsernsError(
                "create user namespace: could not find an empty slot to allocate a user "
                f"namespace: all {self._blocks} blocks of {self._size} IDs from "
                f"{self._first_block * self._size} are in use")
        block = next(b for b in range(self._first_block, self._first_block + self._blocks)
                     if b not in self._used)
        first = block * self._size
        self._record(uid, first)
        try:
            self._write(uid, first)
        except (OSError, UsernsError) as exc:
            self._forget(uid)
            raise UsernsError(f"create user namespace: {exc}") from exc
        log.info("pod %s: user namespace block %d+%d", uid, first, self._size)
        return first

    def _forget(self, uid: str) -> bool:
        first = self._by_pod.pop(uid, None)
        if first is None:
            return False
        self._used.discard(first // self._size)
        return True

    # -- what the kubelet calls ---------------------------------------------------------

    @property
    def allocations(self) -> dict[str, int]:
        """Pod UID -> first host ID (a copy)."""
        with self._lock:
            return dict(self._by_pod)

    def _options(self, first: int) -> pb.UserNamespace:
        m = pb.IDMapping(host_id=first, container_id=0, length=self._size)
        return pb.UserNamespace(mode=pb.POD, uids=[m], gids=[m])

    async def check_handler(self, handler: str) -> None:
        """Raise unless the runtime reports that `handler` supports user namespaces."""
        msg = "can't set `spec.hostUsers: false`, runtime does not support user namespaces"
        if handler:
            msg = (f"can't set `spec.hostUsers: false`, RuntimeClass handler {_q(handler)} "
                   "does not support user namespaces")
        try:
            status = await self._status()
        except KubeletError as exc:
            raise UsernsError(f"{msg}: {exc}") from exc
        if not status.runtime_handlers:
            raise UsernsError(f"{msg}: runtime handlers are not set")
        for h in status.runtime_handlers:
            if h.name == handler:
                if not h.features.user_namespaces:
                    raise UsernsError(msg)
                return
        raise UsernsError(f"{msg}: the handler {_q(handler)} is not known")

    async def for_sandbox(self, pod: Pod, handler: str) -> pb.UserNamespace:
        """The pod's user namespace options, allocating its block on first use."""
        if not wants_own_userns(pod):
            return pb.UserNamespace(mode=pb.NODE)
        spec = pod["spec"]
        for field, name in HOST_NAMESPACES:
            if spec.get(field):
                raise UsernsError(f"spec.{name}: Forbidden: when `pod.Spec.HostUsers` is "
                                  "false")
        await self.check_handler(handler)
        uid = pod_uid(pod)
        with self._lock:
            first = self._by_pod.get(uid)
            if first is None:
                first = self._allocate(uid)
        return self._options(first)

    def for_container(self, pod: Pod) -> pb.UserNamespace:
        """The options the pod's sandbox was created with (containers must match them)."""
        if not wants_own_userns(pod):
            return pb.UserNamespace(mode=pb.NODE)
        with self._lock:
            first = self._by_pod.get(pod_uid(pod))
        if first is None:
            raise UsernsError(f"pod {pod_uid(pod)} has no user namespace allocated: its "
                              "sandbox was not created by this kubelet")
        return self._options(first)

    def release(self, uid: str) -> None:
        """Free the pod's block (its sandboxes are gone) and remove its state file."""
        with self._lock:
            if not self._forget(uid):
                return
            try:
                self._file(uid).unlink(missing_ok=True)
            except (OSError, UsernsError) as exc:
                log.warning("pod %s: user namespace state not removed: %s", uid, exc)
        log.info("pod %s: user namespace block released", uid)

    def prune(self, keep: Iterable[str]) -> list[str]:
        """Release the blocks of pods not in `keep` (neither known nor in the runtime)."""
        keep = set(keep)
        gone = [uid for uid in self.allocations if uid not in keep]
        for uid in gone:
            self.release(uid)
        return gone
