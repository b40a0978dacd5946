"""Where pod workers report: status PATCHes (only on change), events, the final delete."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from kubelet_py.client.errors import ApiError, ApiUnavailable, Conflict, Forbidden, NotFound
from kubelet_py.client.rest import STRATEGIC_MERGE_PATCH, RestClient
from kubelet_py.clock import Clock, rfc3339
from kubelet_py.pods.model import Pod, pod_uid
from kubelet_py.pods.static import HASH, MIRROR, mirror_of
from kubelet_py.pods.status import status_changed

log = logging.getLogger(__name__)
Obj = dict[str, Any]
EVENT_DEDUP_SECONDS = 60.0


def _pod_path(pod: Pod) -> str:
    meta = pod["metadata"]
    return f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"


class ApiReporter:
    def __init__(self, rest: RestClient, *, node_name: str, clock: Clock) -> None:
        self._rest = rest
        self._node = node_name
        self._clock = clock
        self._last: dict[str, Obj] = {}
        self._events: dict[tuple[str, str, str], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.patches = 0

    async def report(self, pod: Pod, status: Obj) -> None:
        uid = pod_uid(pod)
        base = self._last.get(uid) or pod.get("status") or {}
        if not status_changed(base, status):
            return
        body = {"metadata": {"uid": uid}, "status": status}
        try:
            await self._rest.patch(_pod_path(pod) + "/status", body,
                                   content_type=STRATEGIC_MERGE_PATCH)
        except NotFound:
            return
        except Forbidden as exc:
            log.error("pod %s status patch forbidden: %s", _pod_path(pod), exc.message)
            return
        self._last[uid] = status
        self.patches += 1

    async def finalize(self, pod: Pod) -> None:
        """Remove the pod object now that its containers are stopped (grace 0, same UID)."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": pod_uid(pod)}}
        with contextlib.suppress(NotFound, Conflict):  # gone, or a new pod took the name
            await self._rest.delete(_pod_path(pod), body)
        self.forget(pod_uid(pod))

    def forget(self, uid: str) -> None:
        self._last.pop(uid, None)

    def event(self, pod: Pod, *, kind: str, reason: str, message: str) -> None:
        """Record an Event on the pod (best effort, deduplicated for a minute)."""
        key = (pod_uid(pod), reason, message)
        now = self._clock.monotonic()
        if now - self._events.get(key, -EVENT_DEDUP_SECONDS) < EVENT_DEDUP_SECONDS:
            return
        self._events = {k: t for k, t in self._events.items()
                        if now - t < EVENT_DEDUP_SECONDS}
        self._events[key] = now
        task = asyncio.ensure_future(self._post(pod, kind=kind, reason=reason, message=message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, pod: Pod, *, kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        stamp = rfc3339(self._clock.now())
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.",
                             "namespace": meta["namespace"]},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                   "namespace": meta["namespace"], "uid": meta["uid"]},
                "reason": reason, "message": message[:1024], "type": kind,
                "source": {"component": "kubelet", "host": self._node},
                "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
                "reportingComponent": "kubelet", "reportingInstance": self._node}
        try:
            await self._rest.create(f"/api/v1/namespaces/{meta['namespace']}/events", body)
        except (ApiError, ApiUnavailable) as exc:
            log.debug("event %s for %s not recorded: %s", reason, meta["name"], exc)


class LocalReporter:
    """Standalone mode: no API server; statuses are kept for inspection and logged."""

    def __init__(self) -> None:
        self.statuses: dict[str, Obj] = {}

    async def report(self, pod: Pod, status: Obj) -> None:
        uid = pod_uid(pod)
        if status_changed(self.statuses.get(uid, {}), status):
            log.info("pod %s/%s: %s", pod["metadata"]["namespace"], pod["metadata"]["name"],
                     status.get("phase"))
            self.statuses[uid] = status

    async def finalize(self, pod: Pod) -> None:
        self.forget(pod_uid(pod))

    def forget(self, uid: str) -> None:
        self.statuses.pop(uid, None)

    def event(self, pod: Pod, *, kind: str, reason: str, message: str) -> None:
        log.log(logging.WARNING if kind == "Warning" else logging.INFO, "pod %s/%s: %s: %s",
                pod["metadata"]["namespace"], pod["metadata"]["name"], reason, message)


class MirrorReporter:
    """Static pods beside an API server: a mirror pod shows each one, with its status."""

    def __init__(self, rest: RestClient, api: ApiReporter,
                 lookup: Callable[[str], Obj | None], *, node_name: str) -> None:
        self._rest = rest
        self._node = node_name
        self._owner: Obj | None = None
        self._api = api
        self._lookup = lookup
        """`namespace/name` -> the pod as this node's informer sees it (the node authorizer
        lets a node read only pods bound to it, so a missing mirror cannot be GET)."""
        self._last: dict[str, Obj] = {}

    async def _ensure_mirror(self, pod: Pod) -> None:
        meta = pod["metadata"]
        want = meta["annotations"][HASH]
        current = self._lookup(f"{meta['namespace']}/{meta['name']}")
        if current is not None:
            if (current["metadata"].get("annotations") or {}).get(MIRROR) == want:
                return
            with contextlib.suppress(NotFound):
                await self._rest.delete(_pod_path(pod), {"gracePeriodSeconds": 0})
        mirror = mirror_of(pod)
        # NodeRestriction: a node may create only mirror pods owned by its Node.
        mirror["metadata"]["ownerReferences"] = [await self._node_owner()]
        with contextlib.suppress(Conflict):  # created already; our cache is behind
            await self._rest.create(f"/api/v1/namespaces/{meta['namespace']}/pods", mirror)
        self._last.pop(pod_uid(pod), None)

    async def _node_owner(self) -> Obj:
        if self._owner is None:
            node = await self._rest.get(f"/api/v1/nodes/{self._node}")
            self._owner = {"apiVersion": "v1", "kind": "Node", "name": self._node,
                           "uid": node["metadata"]["uid"], "controller": True}
        return self._owner

    async def report(self, pod: Pod, status: Obj) -> None:
        uid = pod_uid(pod)
        if not status_changed(self._last.get(uid, {}), status):
            return
        try:
            await self._ensure_mirror(pod)
            await self._rest.patch(_pod_path(pod) + "/status", {"status": status},
                                   content_type=STRATEGIC_MERGE_PATCH)
        except (ApiError, ApiUnavailable) as exc:
            log.warning("mirror pod %s: %s", _pod_path(pod), exc)
            return
        self._last[uid] = status

    async def finalize(self, pod: Pod) -> None:
        with contextlib.suppress(NotFound):
            await self._rest.delete(_pod_path(pod), {"gracePeriodSeconds": 0})
        self.forget(pod_uid(pod))

    def forget(self, uid: str) -> None:
        self._last.pop(uid, None)

    def event(self, pod: Pod, *, kind: str, reason: str, message: str) -> None:
        self._api.event(pod, kind=kind, reason=reason, message=message)
