"""`compute_pod_actions`: what to do for one pod, from its spec and the runtime's state (pure).

Sandbox first (create, or kill everything and recreate), then init containers strictly in
order (sidecars, i.e. restartable init containers, stay running and count as done once
started), then app containers; restarts follow restartPolicy with back-off.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from kubelet_py.pods.backoff import BackoffEntry, in_backoff, next_entry
from kubelet_py.pods.model import (
    Pod,
    PodRuntime,
    RuntimeContainer,
    State,
    container_hash,
    restartable,
)


@dataclasses.dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclasses.dataclass(frozen=True)
class StartFailure:
    """The last failed start of a container (image pull or create)."""

    reason: str
    message: str
    at: dt.datetime


@dataclasses.dataclass(frozen=True)
class PodActions:
    kill_pod: bool = False
    """Stop every container and the sandbox (before a recreate, or because the pod is done)."""
    create_sandbox: bool = False
    sandbox_attempt: int = 0
    sandbox_id: str = ""
    start: tuple[str, ...] = ()
    """Containers (init or app) to create and start, in order."""
    attempts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    remove: tuple[str, ...] = ()
    """Container IDs to remove first (created but never started: a failed earlier try)."""
    kill: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Running container IDs to stop first, with why (a changed definition)."""
    waiting: Mapping[str, Waiting] = dataclasses.field(default_factory=dict)
    backoff: Mapping[str, BackoffEntry] = dataclasses.field(default_factory=dict)
    """Back-off entries to store for the restarts in `start`."""
    requeue_after: float | None = None
    """Sync again after this many seconds (a back-off expiring)."""
    done: bool = False
    """Every container finished and none will restart: the pod reached a final phase."""


def _should_restart(policy: str, c: RuntimeContainer) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return c.exit_code != 0
    return False


class _Plan:
    def __init__(self, pod: Pod, runtime: PodRuntime, now: dt.datetime,
                 backoff: Mapping[str, BackoffEntry],
                 failures: Mapping[str, StartFailure]) -> None:
        self.spec: dict[str, Any] = pod.get("spec") or {}
        self.policy: str = self.spec.get("restartPolicy", "Always")
        self.all = runtime
        sandbox = runtime.sandbox
        self.view = runtime.in_sandbox(sandbox.id) if sandbox is not None else runtime
        self.now = now
        self.backoff_in = backoff
        self.failures = failures
        self.specs: dict[str, dict[str, Any]] = {
            c["name"]: c for c in [*(self.spec.get("initContainers") or []),
                                   *(self.spec.get("containers") or [])]}
        self.start: list[str] = []
        self.remove: list[str] = []
        self.kill: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.waiting: dict[str, Waiting] = {}
        self.backoff: dict[str, BackoffEntry] = {}
        self.requeue: list[float] = []

    def _held(self, name: str, entry: BackoffEntry | None, since: dt.datetime,
              waiting: Waiting) -> bool:
        if not in_backoff(entry, since=since, now=self.now):
            return False
        assert entry is not None
        self.waiting[name] = waiting
        self.requeue.append(max(0.0, entry.delay - (self.now - since).total_seconds()))
        return True

    def want_start(self, name: str, exited: RuntimeContainer | None) -> None:
        """Queue a start unless a back-off holds it (then record why it waits)."""
        failure = self.failures.get(name)
        entry = self.backoff_in.get(name)
        if failure is not None:
            reason = "ImagePullBackOff" if failure.reason == "ErrImagePull" else failure.reason
            if self._held(name, entry, failure.at, Waiting(reason, failure.message)):
                return
        elif exited is not None:
            since = exited.finished_at or self.now
            message = (f"back-off {entry.delay:.0f}s restarting failed container={name}"
                       if entry else "")
            if self._held(name, entry, since, Waiting("CrashLoopBackOff", message)):
                return
            self.backoff[name] = next_entry(entry, now=self.now)
        self.start.append(name)
        self.attempts[name] = self.all.next_attempt(name)

    def ensure(self, name: str, policy: str) -> bool:
        """Start, restart or leave one container; True when it is running."""
        c = self.view.latest(name)
        if c is not None and c.state == State.RUNNING:
            if not c.hash or c.hash == container_hash(self.specs[name]):
                return True
            # Whatever the restart policy: the container must run its new definition.
            self.kill[c.id] = f"Container {name} definition changed, will be restarted"
            self.want_start(name, None)
            return False
        if c is None:
            self.want_start(name, None)
        elif c.state in (State.CREATED, State.UNKNOWN):
            self.remove.append(c.id)
            self.want_start(name, None)
        elif _should_restart(policy, c):
            self.want_start(name, c)
        return False

    def actions(self, sandbox_id: str) -> PodActions:
        return PodActions(sandbox_id=sandbox_id, start=tuple(self.start),
                          attempts=dict(self.attempts), remove=tuple(self.remove),
                          kill=dict(self.kill),
                          waiting=dict(self.waiting), backoff=dict(self.backoff),
                          requeue_after=min(self.requeue) if self.requeue else None)


def compute_pod_actions(pod: Pod, runtime: PodRuntime, now: dt.datetime, *,
                        backoff: Mapping[str, BackoffEntry] | None = None,
                        failures: Mapping[str, StartFailure] | None = None) -> PodActions:
    plan = _Plan(pod, runtime, now, backoff or {}, failures or {})
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return _done(runtime)
    inits: list[dict[str, Any]] = plan.spec.get("initContainers") or []
    apps: list[dict[str, Any]] = plan.spec.get("containers") or []
    sandbox = runtime.sandbox

    if sandbox is None or not sandbox.ready:
        if sandbox is not None and plan.policy == "Never" and runtime.containers:
            # The pod ran and must not restart: it is over, whatever its sandbox did.
            return _done(runtime)
        names = [inits[0]["name"]] if inits else [c["name"] for c in apps]
        return PodActions(kill_pod=sandbox is not None, create_sandbox=True,
                          sandbox_attempt=0 if sandbox is None else sandbox.attempt + 1,
                          start=tuple(names),
                          attempts={n: runtime.next_attempt(n) for n in names})

    # Init containers, in order; sidecars only gate the ones after them until first started.
    initialized = any(plan.view.latest(c["name"]) is not None for c in apps)
    if initialized and plan.policy != "Always" and all(
            _finished(plan.view.latest(c["name"]), plan.policy) for c in apps):
        # Every app container finished for good: stop the sidecars and the sandbox.
        return _done(runtime)
    for init in inits:
        name = init["name"]
        if restartable(init):
            if not plan.ensure(name, "Always") and not initialized:
                return plan.actions(sandbox.id)
            continue
        if initialized:
            continue
        c = plan.view.latest(name)
        if c is not None and c.state == State.EXITED and c.exit_code == 0:
            continue
        if c is not None and c.state == State.RUNNING:
            return plan.actions(sandbox.id)
        if c is not None and c.state == State.EXITED and plan.policy == "Never":
            return _done(runtime)
        plan.ensure(name, "OnFailure")
        return plan.actions(sandbox.id)

    for container in apps:
        plan.ensure(container["name"], plan.policy)
    return plan.actions(sandbox.id)


def _done(runtime: PodRuntime) -> PodActions:
    """A pod in its final phase: only stop what still runs (sidecars, the sandbox)."""
    sandbox = runtime.sandbox
    alive = bool(runtime.running()) or any(s.ready for s in runtime.sandboxes)
    return PodActions(kill_pod=alive, sandbox_id=sandbox.id if sandbox else "", done=True)


def _finished(c: RuntimeContainer | None, policy: str) -> bool:
    return c is not None and c.state == State.EXITED and not _should_restart(policy, c)
