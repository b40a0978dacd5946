"""The pods bound to this node: API informer -> one worker per UID; PLEG wakes them."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubelet_py.client.errors import ApiError, ApiUnavailable, NotFound
from kubelet_py.client.informer import Informer
from kubelet_py.client.rest import RestClient
from kubelet_py.clock import Clock
from kubelet_py.cri_client import CRIClient, CRIError
from kubelet_py.node.allocatable import Allocatable
from kubelet_py.pods.admission import NodeIdentity, NodeView, Rejection, admit
from kubelet_py.pods.executor import Executor, SandboxError
from kubelet_py.pods.logrotate import LogRotator
from kubelet_py.pods.model import LABEL_POD_UID, Pod, pod_uid
from kubelet_py.pods.pleg import CRIPlegRuntime, Pleg
from kubelet_py.pods.reporting import ApiReporter, LocalReporter, MirrorReporter
from kubelet_py.pods.runtime_view import pod_runtime
from kubelet_py.pods.static import SOURCE, StaticPodSource, is_mirror
from kubelet_py.pods.userns import UserNamespaces
from kubelet_py.pods.worker import PodWorker, Reporter

log = logging.getLogger(__name__)
ORPHAN_GRACE = 2
TERMINAL = ("Succeeded", "Failed")


class PodManager:
    """Pods from the API (when `rest` is given) and from static manifests (when a path is)."""

    def __init__(self, rest: RestClient | None, cri: CRIClient, *, node_name: str,
                 executor: Executor, clock: Clock, host_ips: tuple[str, ...],
                 cleanup: Callable[[str], None], allocatable: Allocatable,
                 node: NodeView | None = None,
                 manifest_path: Path | None = None,
                 userns: UserNamespaces | None = None) -> None:
        self._rest = rest
        self._userns = userns
        self._allocatable = allocatable
        self._node_name = node_name
        self._node = node
        """The Node's current labels and taints, for admission (None: not checked)."""
        self.rejected: set[str] = set()
        """UIDs refused at admission: they failed for good and get no worker."""
        self._rejections: dict[str, Rejection] = {}
        self._finalizing: set[str] = set()
        self._cri = cri
        self._exec = executor
        self._clock = clock
        self._host_ips = host_ips
        self._cleanup = cleanup
        self.informer: Informer | None = None
        self.reporter: Reporter
        self._static_reporter: Reporter
        if rest is not None:
            api = ApiReporter(rest, node_name=node_name, clock=clock)
            informer = Informer(rest, "/api/v1/pods",
                                field_selector=f"spec.nodeName={node_name}",
                                handler=self._on_event, clock=clock)
            self.informer = informer
            self.reporter = api
            self._static_reporter = MirrorReporter(rest, api, informer.store.get,
                                                  node_name=node_name)
        else:
            self.reporter = self._static_reporter = LocalReporter()
        self.static = StaticPodSource(manifest_path, node_name=node_name,
                                      handler=self._on_event, clock=clock) \
            if manifest_path is not None else None
        self.pleg = Pleg(CRIPlegRuntime(cri), self._on_runtime_change, clock=clock)
        self.workers: dict[str, PodWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._runtime_name = "cri"
        self._group: asyncio.TaskGroup | None = None

    def runtime_name(self) -> str:
        return self._runtime_name

    async def _handler(self, pod: Pod) -> str:
        name = pod["spec"].get("runtimeClassName")
        if not name:
            return ""
        if self._rest is None:
            raise SandboxError(f'RuntimeClass "{name}" needs an API server to resolve')
        try:
            rc = await self._rest.get(f"/apis/node.k8s.io/v1/runtimeclasses/{name}")
        except NotFound:
            raise SandboxError('Failed to create pod sandbox: runtimeclasses.node.k8s.io '
                               f'"{name}" not found') from None
        except (ApiError, ApiUnavailable) as exc:
            raise SandboxError(f"Failed to create pod sandbox: failed to lookup RuntimeClass "
                               f"{name}: {exc}") from exc
        return str(rc.get("handler", ""))

    def _reporter_for(self, pod: Pod) -> Reporter:
        static = (pod["metadata"].get("annotations") or {}).get(SOURCE) == "file"
        return self._static_reporter if static else self.reporter

    def active_pods(self) -> list[Pod]:
        """Admitted pods that still hold node resources (not in a final phase)."""
        return [w.pod for w in self.workers.values() if w.pod is not None and not w.done
                and (w.pod.get("status") or {}).get("phase") not in TERMINAL]

    def _admit(self, pod: Pod) -> Rejection | None:
        """Upstream's admission for a pod new to this node; pods already over or being
        deleted are not admitted again (their worker only cleans up)."""
        if (pod.get("status") or {}).get("phase") in TERMINAL or \
                pod["metadata"].get("deletionTimestamp"):
            return None
        try:
            node = NodeIdentity(self._node_name, self._node.labels(), self._node.taints()) \
                if self._node is not None else None
            return admit(pod, self.active_pods(), self._allocatable, node)
        except (KeyError, TypeError, ValueError) as exc:  # a spec shape we did not foresee
            log.exception("admitting pod %s failed", pod_uid(pod))
            return Rejection("UnexpectedAdmissionError",
                             f"Unexpected error while attempting admission: {exc!r}")

    async def _reject(self, pod: Pod, rejection: Rejection) -> None:
        log.warning("pod %s/%s rejected: %s: %s", pod["metadata"]["namespace"],
                    pod["metadata"]["name"], rejection.reason, rejection.message)
        reporter = self._reporter_for(pod)
        reporter.event(pod, kind="Warning", reason=rejection.reason, message=rejection.message)
        delay = 0.5
        while pod_uid(pod) in self.rejected:
            try:
                await reporter.report(pod, rejection.status(pod))
                return
            except (ApiError, ApiUnavailable) as exc:
                log.warning("pod %s: rejection status not written: %s", pod_uid(pod), exc)
                await self._clock.sleep(delay)
                delay = min(30.0, delay * 2)

    def _rejected_changed(self, uid: str, pod: Pod) -> None:
        """A rejected pod being deleted (by a user, or by the taint-eviction controller
        before its Failed status landed): it never ran, so the kubelet writes that status
        and removes the object at once, as upstream's status manager does for terminal
        pods. Without this, the object would wait for a kubelet forever."""
        rejection = self._rejections.get(uid)
        if rejection is None or uid in self._finalizing or \
                not pod["metadata"].get("deletionTimestamp"):
            return
        self._finalizing.add(uid)
        assert self._group is not None
        self._group.create_task(self._finalize_rejected(pod, rejection),
                                name=f"finalize-{uid}")

    async def _finalize_rejected(self, pod: Pod, rejection: Rejection) -> None:
        reporter = self._reporter_for(pod)
        delay = 0.5
        while pod_uid(pod) in self.rejected:
            try:
                await reporter.report(pod, rejection.status(pod))
                await reporter.finalize(pod)
                return
            except (ApiError, ApiUnavailable) as exc:
                log.warning("pod %s: rejected pod not removed yet: %s", pod_uid(pod), exc)
                await self._clock.sleep(delay)
                delay = min(30.0, delay * 2)

    def _worker(self, uid: str, pod: Pod) -> PodWorker:
        worker = self.workers.get(uid)
        if worker is None:
            worker = PodWorker(uid, executor=self._exec,
                               view=lambda u: pod_runtime(self._cri, u),
                               reporter=self._reporter_for(pod),
                               clock=self._clock,
                               runtime_name=self.runtime_name, host_ips=self._host_ips,
                               runtime_handler=self._handler, cleanup=self._cleanup)
            self.workers[uid] = worker
            assert self._group is not None
            task = self._group.create_task(self._run_worker(worker), name=f"pod-{uid}")
            self._tasks[uid] = task
        return worker

    async def _run_worker(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        except Exception:
            log.exception("pod worker %s crashed", worker.uid)
        finally:
            self.workers.pop(worker.uid, None)
            self._tasks.pop(worker.uid, None)

    def _on_event(self, kind: str, pod: dict[str, Any]) -> None:
        if is_mirror(pod):
            return  # our own reflection of a static pod
        uid = pod_uid(pod)
        if kind == "DELETED":
            self.rejected.discard(uid)
            self._rejections.pop(uid, None)
            self._finalizing.discard(uid)
            worker = self.workers.get(uid)
            if worker is not None:
                worker.update(pod)
                worker.remove()
            return
        if self._group is None:
            return
        if uid in self.rejected:
            self._rejected_changed(uid, pod)
            return
        if uid not in self.workers:
            rejection = self._admit(pod)
            if rejection is not None:
                self.rejected.add(uid)
                self._rejections[uid] = rejection
                self._group.create_task(self._reject(pod, rejection), name=f"reject-{uid}")
                return
        self._worker(uid, pod).update(pod)

    def _on_runtime_change(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is not None:
            worker.poke()

    async def reconcile_orphans(self) -> int:
        """Kill and remove sandboxes whose pod this node no longer has (e.g. deleted while
        the kubelet was down); found by their CRI labels."""
        known = set(self.workers)
        if self.informer is not None:
            known |= {pod_uid(p) for p in self.informer.store.items()}
        if self.static is not None:
            known |= set(self.static.pods)
        sandboxes = await self._cri.sandboxes.list()
        # A pod rejected at admission never runs: what it left from before a restart goes.
        orphans = {s.labels.get(LABEL_POD_UID, "") for s in sandboxes} - \
            (known - self.rejected) - {""}
        for uid in orphans:
            runtime = await pod_runtime(self._cri, uid)
            log.info("removing orphaned pod %s (%d sandboxes)", uid, len(runtime.sandboxes))
            await self._exec.kill_pod(runtime, grace=ORPHAN_GRACE)
            await self._exec.remove_pod(runtime)
            self._cleanup(uid)
        if self._userns is not None:
            # Blocks of pods neither known nor in the runtime (their sandboxes went while the
            # kubelet was down) are free again.
            in_runtime = {s.labels.get(LABEL_POD_UID, "") for s in sandboxes} - orphans
            for uid in self._userns.prune((known - self.rejected) | in_runtime):
                log.info("released the user namespace block of pod %s (gone)", uid)
        return len(orphans)

    async def _await_runtime(self) -> None:
        delay = 0.5
        while True:
            try:
                version = await self._cri.info.version(timeout=10.0)
            except CRIError as exc:
                log.warning("waiting for the container runtime: %s", exc)
                await self._clock.sleep(delay)
                delay = min(10.0, delay * 2)
                continue
            self._runtime_name = version.runtime_name
            log.info("container runtime %s %s (CRI %s)", version.runtime_name,
                     version.runtime_version, version.runtime_api_version)
            return

    async def run(self) -> None:
        await self._await_runtime()
        async with asyncio.TaskGroup() as tg:
            self._group = tg
            if self.static is not None:
                self.static.sync_once()
                tg.create_task(self.static.run(), name="static-pods")
            if self.informer is not None:
                tg.create_task(self.informer.run(), name="pod-informer")
                await self.informer.synced.wait()
            tg.create_task(self.pleg.run(), name="pleg")
            tg.create_task(LogRotator(self._cri, clock=self._clock).run(), name="log-rotation")
            try:
                await self.reconcile_orphans()
            except Exception:
                log.exception("orphan reconciliation failed")
            log.info("pod manager running: %d pods", len(self.workers))

    def pods(self) -> list[Pod]:
        """The pods this node runs now (API and static), as last seen."""
        return [w.pod for w in self.workers.values() if w.pod is not None]

    def find(self, namespace: str, name: str) -> Pod | None:
        for pod in self.pods():
            meta = pod["metadata"]
            if meta.get("namespace") == namespace and meta.get("name") == name:
                return pod
        return None
