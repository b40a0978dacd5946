"""One worker per pod UID: the latest update wins; plan, execute, report, repeat."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from kubelet_py.client.errors import ApiError, ApiUnavailable
from kubelet_py.clock import Clock
from kubelet_py.errors import KubeletError
from kubelet_py.pods import deadline
from kubelet_py.pods.backoff import INITIAL, BackoffEntry, next_entry
from kubelet_py.pods.executor import Executor, SandboxError, StartError
from kubelet_py.pods.model import Pod, PodRuntime, pod_key
from kubelet_py.pods.planner import PodActions, StartFailure, Waiting, compute_pod_actions
from kubelet_py.pods.probes import ProbeManager
from kubelet_py.pods.status import StatusInputs, compute_pod_status

log = logging.getLogger(__name__)
Obj = dict[str, Any]
RESYNC = 30.0
ERROR_RETRY = 5.0
CONFIG_RETRY = INITIAL
"""A container whose config cannot be built (a ConfigMap or Secret missing) is retried this
often, without doubling, so it starts soon after the object appears."""
CONFIG_ERROR = "CreateContainerConfigError"
PULL_ERROR = "ErrImagePull"
BACKOFF_REPORT = 1.0
"""A failed pull is reported as ErrImagePull, then the pod is synced again this soon so that
its status says ImagePullBackOff while the back-off holds (as upstream shows it); without
this the next sync came only when the back-off ended, retried, and failed again."""


class Reporter(Protocol):
    async def report(self, pod: Pod, status: Obj) -> None: ...

    async def finalize(self, pod: Pod) -> None: ...

    def forget(self, uid: str) -> None: ...

    def event(self, pod: Pod, *, kind: str, reason: str, message: str) -> None: ...


def _desired(pod: Pod) -> tuple[Any, Any]:
    meta = {k: v for k, v in pod["metadata"].items()
            if k not in ("resourceVersion", "managedFields")}
    return meta, pod.get("spec")


def grace_seconds(pod: Pod) -> int:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    value = meta.get("deletionGracePeriodSeconds")
    if value is None:
        value = spec.get("terminationGracePeriodSeconds", 30)
    return max(0, int(value))


class PodWorker:
    def __init__(self, uid: str, *, executor: Executor,
                 view: Callable[[str], Awaitable[PodRuntime]], reporter: Reporter,
                 clock: Clock, runtime_name: Callable[[], str], host_ips: tuple[str, ...],
                 runtime_handler: Callable[[Pod], Awaitable[str]],
                 cleanup: Callable[[str], None]) -> None:
        self.uid = uid
        self._exec = executor
        self._view = view
        self._reporter = reporter
        self._clock = clock
        self._runtime_name = runtime_name
        self._host_ips = host_ips
        self._handler = runtime_handler
        self._cleanup = cleanup
        self.pod: Pod | None = None
        self.removed = False
        self.backoff: dict[str, BackoffEntry] = {}
        self.failures: dict[str, StartFailure] = {}
        self._wake = asyncio.Event()
        self.probes = ProbeManager(executor, on_change=self.poke, kill=self._probe_kill)
        self.syncs = 0
        self.sandbox_backoff: BackoffEntry | None = None
        self.done = False
        """Sticky: once the pod reached a final phase it never runs again."""
        self.expired = False
        """The pod outlived spec.activeDeadlineSeconds (it fails with DeadlineExceeded)."""
        self.first_seen: dt.datetime | None = None

    def update(self, pod: Pod) -> None:
        """The latest version wins; only a change beyond status (ours) wakes the worker."""
        previous, self.pod = self.pod, pod
        if previous is None or _desired(previous) != _desired(pod):
            self._wake.set()

    def remove(self) -> None:
        self.removed = True
        self._wake.set()

    def poke(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Sync until the pod is terminated and gone from the API."""
        requeue: float | None = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       RESYNC if requeue is None else max(0.0, requeue))
            self._wake.clear()
            if self.pod is None:
                continue
            try:
                finished, requeue = await self.sync(self.pod)
            except (KubeletError, ApiError, ApiUnavailable) as exc:
                log.warning("pod %s: sync failed: %s", pod_key(self.pod), exc)
                finished, requeue = False, ERROR_RETRY
            except Exception as exc:  # a spec we did not foresee must not end the worker
                log.exception("pod %s: sync failed unexpectedly", pod_key(self.pod))
                self._reporter.event(self.pod, kind="Warning", reason="FailedSync",
                                     message=f"error syncing pod: {exc!r}")
                finished, requeue = False, ERROR_RETRY
            if finished:
                return

    async def sync(self, pod: Pod) -> tuple[bool, float | None]:
        """One pass; returns (worker finished, seconds until the next forced sync)."""
        self.syncs += 1
        runtime = await self._view(self.uid)
        if self.removed or pod["metadata"].get("deletionTimestamp"):
            await self.terminate(pod, runtime)
            return True, None
        now = self._clock.now()
        left = deadline.seconds_left(pod, now, first_seen=self.first_seen or now)
        self.first_seen = self.first_seen or now
        over = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        if not self.done and not over and left is not None and left <= 0:
            log.info("pod %s: %s", pod_key(pod), deadline.MESSAGE)
            self._reporter.event(pod, kind="Normal", reason=deadline.REASON,
                                 message=deadline.MESSAGE)
            self.done = self.expired = True
        if self.done:
            actions = PodActions(done=True, kill_pod=bool(runtime.running()) or any(
                s.ready for s in runtime.sandboxes))
        else:
            actions = compute_pod_actions(pod, runtime, now, backoff=self.backoff,
                                          failures=self.failures)
        log.debug("pod %s: sync %d: %s", pod_key(pod), self.syncs, actions)
        self.done |= actions.done
        self.backoff.update(actions.backoff)
        waiting = dict(actions.waiting)
        changed, retry = await self._execute(pod, runtime, actions, waiting)
        if changed:
            runtime = await self._view(self.uid)
        self.probes.sync(pod, runtime)
        status = compute_pod_status(pod, runtime, StatusInputs(
            runtime_name=self._runtime_name(), host_ips=self._host_ips, waiting=waiting,
            ready=self.probes.ready, started=self.probes.started,
            failed=(deadline.REASON, deadline.MESSAGE) if self.expired else None),
            self._clock.now())
        await self._reporter.report(pod, status)
        delays = [d for d in (retry if retry is not None else self._requeue(actions),
                              left if left is not None and left > 0 else None)
                  if d is not None]
        return False, min(delays) if delays else None

    async def _probe_kill(self, container_id: str, reason: str) -> None:
        """A failed liveness/startup probe: stop the container; the planner restarts it."""
        if self.pod is not None:
            self._reporter.event(self.pod, kind="Warning", reason="Unhealthy",
                                 message=f"{reason}; container will be restarted")
            await self._exec.stop_container(container_id, grace=grace_seconds(self.pod))
        self.poke()

    def _requeue(self, actions: PodActions) -> float | None:
        delays = [actions.requeue_after] if actions.requeue_after is not None else []
        now = self._clock.now()
        for name, failure in self.failures.items():
            entry = self.backoff.get(name)
            if entry is not None:
                delays.append(max(0.0, entry.delay - (now - failure.at).total_seconds()))
        return min(delays) if delays else None

    async def _execute(self, pod: Pod, runtime: PodRuntime, actions: PodActions,
                       waiting: dict[str, Waiting]) -> tuple[bool, float | None]:
        """Carry the actions out; returns (runtime changed, retry sooner than planned)."""
        changed = False
        if actions.kill_pod:
            await self._exec.kill_pod(runtime, grace=grace_seconds(pod))
            changed = True
        sandbox_id, attempt = actions.sandbox_id, 0
        pod_ips: tuple[str, ...] = ()
        sandbox = runtime.sandbox
        if sandbox is not None:
            attempt, pod_ips = sandbox.attempt, sandbox.ips
        if actions.create_sandbox:
            held = self._sandbox_held()
            if held is not None:
                for name in actions.start:
                    waiting[name] = Waiting("ContainerCreating", "")
                return changed, held
            try:
                handler = await self._handler(pod)
                sandbox_id = await self._exec.create_sandbox(pod, actions.sandbox_attempt,
                                                             runtime_handler=handler)
            except SandboxError as exc:
                log.warning("pod %s: %s", pod_key(pod), exc)
                self.sandbox_backoff = next_entry(self.sandbox_backoff, now=self._clock.now())
                self._reporter.event(pod, kind="Warning", reason="FailedCreatePodSandBox",
                                     message=str(exc))
                for name in actions.start:
                    waiting[name] = Waiting("ContainerCreating", str(exc))
                return changed, self.sandbox_backoff.delay
            self.sandbox_backoff = None
            attempt, changed = actions.sandbox_attempt, True
            pod_ips = await self._exec.sandbox_ips(sandbox_id)
        for container_id, message in actions.kill.items():
            self._reporter.event(pod, kind="Normal", reason="Killing", message=message)
            await self._exec.stop_container(container_id, grace=grace_seconds(pod))
            changed = True
        for container_id in actions.remove:
            await self._exec.remove_container(container_id)
            changed = True
        specs = {c["name"]: (c, True) for c in pod["spec"].get("initContainers") or []}
        specs.update({c["name"]: (c, False) for c in pod["spec"].get("containers") or []})
        retry: float | None = None
        for name in actions.start:
            spec, is_init = specs[name]
            try:
                started = await self._exec.start_container(
                    pod, spec, sandbox_id=sandbox_id, sandbox_attempt=attempt,
                    attempt=actions.attempts.get(name, 0), pod_ips=pod_ips)
            except StartError as exc:
                log.info("pod %s: container %s: %s", pod_key(pod), name, exc)
                self._start_failed(pod, name, exc)
                waiting[name] = Waiting(exc.reason, exc.message)
                if exc.reason == PULL_ERROR:
                    retry = BACKOFF_REPORT
                if is_init:
                    break
                continue
            for warning in started.warnings:
                self._reporter.event(pod, kind="Warning",
                                     reason="InvalidEnvironmentVariableNames", message=warning)
            self.failures.pop(name, None)
            changed = True
        return changed, retry

    def _start_failed(self, pod: Pod, name: str, exc: StartError) -> None:
        now = self._clock.now()
        self.failures[name] = StartFailure(exc.reason, exc.message, now)
        if exc.reason == CONFIG_ERROR:
            self.backoff[name] = BackoffEntry(delay=CONFIG_RETRY, at=now)
            message = f"Error: {exc.message}"
        else:
            self.backoff[name] = next_entry(self.backoff.get(name), now=now)
            message = f"Error: {exc.reason}: {exc.message}"
        self._reporter.event(pod, kind="Warning", reason="Failed", message=message)

    def _sandbox_held(self) -> float | None:
        """Seconds a failed sandbox creation still backs off, None when it may retry."""
        entry = self.sandbox_backoff
        if entry is None:
            return None
        left = (entry.until() - self._clock.now()).total_seconds()
        return left if left > 0 else None

    async def terminate(self, pod: Pod, runtime: PodRuntime) -> None:
        """Stop within the grace period, tear the sandbox down, then let the API forget it."""
        grace = grace_seconds(pod)
        log.info("pod %s: terminating (grace %ss)", pod_key(pod), grace)
        self.probes.stop()
        await self._exec.kill_pod(runtime, grace=grace)
        stopped = await self._view(self.uid)
        if not self.removed:
            status = compute_pod_status(pod, stopped, StatusInputs(
                runtime_name=self._runtime_name(), host_ips=self._host_ips),
                self._clock.now())
            await self._reporter.report(pod, status)
        await self._exec.remove_pod(stopped)
        self._cleanup(self.uid)
        delay = 0.5
        while True:
            try:
                # An API pod already gone answers NotFound; a static pod drops its mirror.
                await self._reporter.finalize(pod)
                break
            except (ApiError, ApiUnavailable) as exc:
                log.warning("pod %s: final delete failed: %s", pod_key(pod), exc)
                await self._clock.sleep(delay)
                delay = min(30.0, delay * 2)
        self._reporter.forget(self.uid)
