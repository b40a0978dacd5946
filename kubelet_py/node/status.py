"""Register the Node, then keep its status current (on change, and at least every 5 min)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from kubelet_py.client.errors import ApiError, ApiUnavailable, Conflict, Forbidden
from kubelet_py.client.rest import STRATEGIC_MERGE_PATCH, RestClient
from kubelet_py.clock import Clock
from kubelet_py.errors import KubeletError, RuntimeUnavailable
from kubelet_py.node.setters import NodeFacts, build_status, initial_node, without_heartbeats

log = logging.getLogger(__name__)

Obj = dict[str, Any]
STATUS_FIELDS = ("conditions", "addresses", "capacity", "allocatable", "nodeInfo",
                 "daemonEndpoints", "runtimeHandlers")
OWN_LABELS = ("kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch")


def status_patch(current: Obj, fresh: Obj) -> Obj:
    """The fields this kubelet owns, as the setters left them; one a setter removed is
    sent as null (a strategic merge patch deletes it)."""
    patch: Obj = {k: fresh[k] for k in STATUS_FIELDS if k in fresh}
    patch.update({k: None for k in STATUS_FIELDS if k in current and k not in fresh})
    return patch


class PodCIDRSink(Protocol):
    async def update_pod_cidr(self, cidr: str) -> None: ...


class RegistrationForbidden(KubeletError):
    """The API server refused to let this identity create or read its Node."""


@dataclasses.dataclass(frozen=True)
class Frequencies:
    update: float = 10.0
    """How often the status is recomputed (nodeStatusUpdateFrequency)."""
    report: float = 300.0
    """Report at least this often even without change (nodeStatusReportFrequency)."""


class NodeStatusController:
    def __init__(self, client: RestClient, *, facts: Callable[[], Awaitable[NodeFacts]],
                 labels: dict[str, str], clock: Clock, pod_cidr_sink: PodCIDRSink | None = None,
                 frequencies: Frequencies = Frequencies(),
                 on_registered: Callable[[Obj], None] | None = None) -> None:
        self._client = client
        self._facts = facts
        self._labels = labels
        self._clock = clock
        self._sink = pod_cidr_sink
        self._freq = frequencies
        self._on_registered = on_registered
        self._last_report: float | None = None
        self._pod_cidr: str | None = None
        self._forbidden_logged: set[str] = set()
        self.node: Obj | None = None
        self.patches = 0

    async def register(self) -> Obj:
        facts = await self._facts()
        path = f"/api/v1/nodes/{facts.node_name}"
        node = build_status(initial_node(facts, labels=self._labels), facts, self._clock.now())
        try:
            self.node = await self._client.create("/api/v1/nodes", node)
            log.info("registered node %s", facts.node_name)
        except Conflict:
            existing = await self._client.get(path)
            labels = existing["metadata"].get("labels") or {}
            want = node["metadata"]["labels"]
            fix = {k: want[k] for k in OWN_LABELS if labels.get(k) != want[k]}
            self.node = await self._client.patch(path, {"metadata": {"labels": fix}}) \
                if fix else existing
            log.info("node %s already registered; reusing it", facts.node_name)
        except Forbidden as exc:
            raise RegistrationForbidden(
                f"the API server forbids registering node {facts.node_name}: {exc.message} "
                "(does the client certificate's CN match system:node:<node name>?)") from exc
        if self._on_registered is not None:
            self._on_registered(self.node)
        return self.node

    async def adopt(self) -> Obj:
        """--register-node=false: use the Node someone else created (NotFound until then)."""
        facts = await self._facts()
        self.node = await self._client.get(f"/api/v1/nodes/{facts.node_name}")
        if self._on_registered is not None:
            self._on_registered(self.node)
        return self.node

    async def sync_once(self) -> bool:
        """Recompute the status; PATCH it if it changed or the report period passed."""
        facts = await self._facts()
        path = f"/api/v1/nodes/{facts.node_name}"
        current = await self._client.get(path)
        self.node = current
        await self._sync_pod_cidr(current)
        now: dt.datetime = self._clock.now()
        fresh = build_status(current, facts, now)
        changed = without_heartbeats(fresh["status"]) != without_heartbeats(
            current.get("status") or {})
        due = self._last_report is None or \
            self._clock.monotonic() - self._last_report >= self._freq.report
        if not (changed or due):
            return False
        patch = {"status": status_patch(current.get("status") or {}, fresh["status"])}
        try:
            self.node = await self._client.patch(f"{path}/status", patch,
                                                 content_type=STRATEGIC_MERGE_PATCH)
        except Forbidden as exc:
            if exc.message not in self._forbidden_logged:
                self._forbidden_logged.add(exc.message)
                log.error("node status patch forbidden (not retried until the next "
                          "period): %s", exc.message)
            return False
        self._last_report = self._clock.monotonic()
        self.patches += 1
        return True

    async def _sync_pod_cidr(self, node: Obj) -> None:
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr and cidr != self._pod_cidr and self._sink is not None:
            try:
                await self._sink.update_pod_cidr(cidr)
            except RuntimeUnavailable as exc:
                log.warning("pod CIDR %s not passed to the runtime yet: %s", cidr, exc)
                return
            log.info("pod CIDR %s passed to the runtime", cidr)
            self._pod_cidr = cidr

    async def run(self) -> None:
        while True:
            try:
                await self.sync_once()
            except (ApiError, ApiUnavailable, KubeletError) as exc:
                log.warning("node status update failed: %s", exc)
            await self._clock.sleep(self._freq.update)
