"""The node's Lease in kube-node-lease: the heartbeat the node lifecycle controller reads."""
from __future__ import annotations

import logging
from typing import Any

from kubelet_py.client.errors import ApiError, ApiUnavailable, Conflict, Forbidden, NotFound
from kubelet_py.client.rest import RestClient
from kubelet_py.clock import Clock, micro_time

log = logging.getLogger(__name__)

NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40
RENEW_INTERVAL = 10.0
MAX_RETRY_DELAY = 7.0

Obj = dict[str, Any]


class LeaseController:
    def __init__(self, client: RestClient, node_name: str, *, clock: Clock,
                 duration: int = LEASE_DURATION, interval: float = RENEW_INTERVAL) -> None:
        self._client = client
        self._node = node_name
        self._clock = clock
        self._duration = duration
        self._interval = interval
        self._lease: Obj | None = None
        self._node_uid: str | None = None
        self.renewals = 0

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{self._node}"

    def _owner(self) -> list[Obj]:
        if self._node_uid is None:
            return []
        return [{"apiVersion": "v1", "kind": "Node", "name": self._node, "uid": self._node_uid}]

    def set_node_uid(self, uid: str) -> None:
        self._node_uid = uid

    def _desired(self, base: Obj | None) -> Obj:
        lease: Obj = base or {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                              "metadata": {"name": self._node, "namespace": NAMESPACE}}
        meta = lease.setdefault("metadata", {})
        if not meta.get("ownerReferences") and self._owner():
            meta["ownerReferences"] = self._owner()
        lease["spec"] = {**(lease.get("spec") or {}), "holderIdentity": self._node,
                         "leaseDurationSeconds": self._duration,
                         "renewTime": micro_time(self._clock.now())}
        return lease

    async def renew_once(self) -> None:
        if self._lease is None:
            try:
                self._lease = await self._client.get(self.path)
            except NotFound:
                self._lease = await self._client.create(
                    f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases",
                    self._desired(None))
                self.renewals += 1
                return
        try:
            self._lease = await self._client.replace(self.path, self._desired(self._lease))
        except (Conflict, NotFound):
            self._lease = None
            raise
        self.renewals += 1

    async def run(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.renew_once()
                delay = 0.2
                await self._clock.sleep(self._interval)
            except Forbidden as exc:
                # RBAC/NodeRestriction will not change its mind: log and keep the period.
                log.error("lease %s renewal forbidden: %s", self._node, exc.message)
                await self._clock.sleep(self._interval)
            except (ApiError, ApiUnavailable) as exc:
                log.warning("lease %s renewal failed: %s; retrying in %.1fs", self._node, exc,
                            delay)
                await self._clock.sleep(delay)
                delay = min(MAX_RETRY_DELAY, delay * 2)
