"""The runtime's view of one pod, as plain values the planner and status code read."""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
from typing import Any

Pod = dict[str, Any]
"""A v1.Pod as the API serves it (raw JSON)."""

LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
ANNOTATION_CONTAINER_HASH = "io.kubernetes.container.hash"
ANNOTATION_RESTART_COUNT = "io.kubernetes.container.restartCount"


class State(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class RuntimeContainer:
    id: str
    name: str
    attempt: int
    state: State
    sandbox_id: str = ""
    image: str = ""
    image_ref: str = ""
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    hash: str = ""


@dataclasses.dataclass(frozen=True)
class RuntimeSandbox:
    id: str
    attempt: int
    ready: bool
    created_at: dt.datetime
    ips: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PodRuntime:
    """Every sandbox and container the runtime holds for one pod UID."""

    sandboxes: tuple[RuntimeSandbox, ...] = ()
    containers: tuple[RuntimeContainer, ...] = ()

    @property
    def sandbox(self) -> RuntimeSandbox | None:
        """The newest sandbox."""
        return max(self.sandboxes, key=lambda s: (s.created_at, s.attempt), default=None)

    def latest(self, name: str) -> RuntimeContainer | None:
        """The newest instance of the named container."""
        mine = [c for c in self.containers if c.name == name]
        return max(mine, key=lambda c: (c.attempt, c.created_at or _EPOCH), default=None)

    def previous(self, name: str) -> RuntimeContainer | None:
        """The instance before the newest one (for lastState)."""
        mine = sorted((c for c in self.containers if c.name == name),
                      key=lambda c: (c.attempt, c.created_at or _EPOCH))
        return mine[-2] if len(mine) > 1 else None

    def in_sandbox(self, sandbox_id: str) -> PodRuntime:
        """The same pod seen through one sandbox: only that sandbox's containers."""
        return PodRuntime(self.sandboxes,
                          tuple(c for c in self.containers if c.sandbox_id == sandbox_id))

    def next_attempt(self, name: str) -> int:
        """Attempt numbers keep counting across sandboxes (they are the restart count)."""
        c = self.latest(name)
        return 0 if c is None else c.attempt + 1

    def running(self) -> tuple[RuntimeContainer, ...]:
        return tuple(c for c in self.containers if c.state == State.RUNNING)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def pod_uid(pod: Pod) -> str:
    return str(pod["metadata"]["uid"])


def pod_key(pod: Pod) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


def restartable(init: dict[str, Any]) -> bool:
    """An init container with restartPolicy Always is a sidecar."""
    return init.get("restartPolicy") == "Always"


def container_hash(spec: dict[str, Any]) -> str:
    """The hash stored with each container (`io.kubernetes.container.hash`); when the spec's
    differs from a running container's, the container is recreated.

    Only the fields a pod update may change and that need a new container count (as
    upstream since 1.31: the name and the image), so a kubelet upgrade or a resize does not
    restart containers."""
    picked = json.dumps({"name": spec["name"], "image": spec.get("image", "")},
                        sort_keys=True)
    return str(int(hashlib.sha256(picked.encode()).hexdigest()[:8], 16))
