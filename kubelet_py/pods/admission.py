"""Pod admission: whether this node can run a pod next to the ones it already runs (pure).

The checks of the upstream kubelet's predicate admit handler that apply here, in its order:
the pod count (max-pods), then CPU, memory and ephemeral-storage requests against the node's
allocatable, then node affinity, then host ports, then the node's NoExecute taints (not for
static pods). A rejected pod fails for good: phase Failed, the reason (`OutOfpods`,
`OutOfcpu`, `OutOfmemory`, `OutOfephemeral-storage`, `NodeAffinity`, `NodePorts`,
`TaintToleration`) and
"Pod was rejected: <message>" in its status, the same reason and message as an event.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from kubelet_py.node.allocatable import Allocatable
from kubelet_py.pods import node_affinity, taints
from kubelet_py.pods.model import Pod, restartable
from kubelet_py.pods.node_affinity import node_matches
from kubelet_py.pods.qos import qos_class
from kubelet_py.pods.quantity import QuantityError, bytes_of, millicores
from kubelet_py.pods.static import is_static

Obj = dict[str, Any]
RESOURCES = ("cpu", "memory", "ephemeral-storage")
WILDCARD = "0.0.0.0"
PORTS_PREDICATE = "NodePorts"
PORTS_DESCRIPTION = "node(s) didn't have free ports for the requested pod ports"


@dataclasses.dataclass(frozen=True)
class Rejection:
    reason: str
    message: str

    def status(self, pod: Pod) -> Obj:
        """The status a rejected pod gets."""
        return {"phase": "Failed", "reason": self.reason,
                "message": f"Pod was rejected: {self.message}", "qosClass": qos_class(pod)}


def _amount(resource: str, value: Any) -> int:
    return millicores(value) if resource == "cpu" else bytes_of(value)


def _requests(container: Obj) -> dict[str, int]:
    requests = (container.get("resources") or {}).get("requests") or {}
    return {r: _amount(r, requests[r]) for r in RESOURCES if r in requests}


def pod_requests(pod: Pod) -> dict[str, int]:
    """What a pod asks of the node: app containers and sidecars together, or the largest
    init container (with the sidecars started before it) if that is more; plus overhead.
    Pod-level resources, when given, are the pod's request."""
    spec = pod.get("spec") or {}
    total = dict.fromkeys(RESOURCES, 0)
    for c in spec.get("containers") or []:
        for r, v in _requests(c).items():
            total[r] += v
    sidecars = dict.fromkeys(RESOURCES, 0)
    peak = dict.fromkeys(RESOURCES, 0)
    for c in spec.get("initContainers") or []:
        req = _requests(c)
        for r in RESOURCES:
            if restartable(c):
                sidecars[r] += req.get(r, 0)
            else:
                peak[r] = max(peak[r], req.get(r, 0) + sidecars[r])
    out = {r: max(total[r] + sidecars[r], peak[r]) for r in RESOURCES}
    pod_level = _requests(spec)
    out.update(pod_level)
    for r, v in (spec.get("overhead") or {}).items():
        if r in out:
            out[r] += _amount(r, v)
    return out


def host_ports(pod: Pod) -> set[tuple[str, str, int]]:
    """(host IP, protocol, port) of every hostPort the pod's containers ask for."""
    out = set()
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.add((p.get("hostIP") or WILDCARD, p.get("protocol") or "TCP",
                         int(p["hostPort"])))
    return out


def _ports_conflict(want: set[tuple[str, str, int]],
                    taken: set[tuple[str, str, int]]) -> bool:
    """Same protocol and port, on the same address or on the wildcard on either side."""
    return any(proto == tproto and port == tport and (ip == tip or WILDCARD in (ip, tip))
               for ip, proto, port in want for tip, tproto, tport in taken)


def _insufficient(resource: str, requested: int, used: int, capacity: int) -> Rejection:
    return Rejection(f"OutOf{resource}",
                     f"Node didn't have enough resource: {resource}, requested: {requested}, "
                     f"used: {used}, capacity: {capacity}")


@dataclasses.dataclass(frozen=True)
class NodeIdentity:
    """What node affinity and tolerations are matched against: the Node's name, current
    labels and taints."""

    name: str
    labels: Mapping[str, str]
    taints: tuple[Mapping[str, Any], ...] = ()


class NodeView(Protocol):
    """The registered Node as admission needs it (it may change: kubectl label/taint)."""

    def labels(self) -> Mapping[str, str]: ...

    def taints(self) -> tuple[Mapping[str, Any], ...]: ...


def admit(pod: Pod, others: Iterable[Pod], allocatable: Allocatable,
          node: NodeIdentity | None = None) -> Rejection | None:
    """None when the pod fits beside `others` (the active pods already admitted)."""
    active = list(others)
    if len(active) + 1 > allocatable.pods:
        return _insufficient("pods", 1, len(active), allocatable.pods)
    try:
        want = pod_requests(pod)
        used = dict.fromkeys(RESOURCES, 0)
        for other in active:
            for r, v in pod_requests(other).items():
                used[r] += v
    except QuantityError as exc:
        return Rejection("UnexpectedAdmissionError", f"resource requests: {exc}")
    capacity = {"cpu": allocatable.cpu_millis, "memory": allocatable.memory_bytes,
                "ephemeral-storage": allocatable.ephemeral_storage_bytes}
    if any(want.values()):
        for r in RESOURCES:
            if want[r] > 0 and want[r] > capacity[r] - used[r]:
                return _insufficient(r, want[r], used[r], capacity[r])
    if node is not None and not node_matches(pod, node_name=node.name, labels=node.labels):
        return Rejection(node_affinity.PREDICATE,
                         f"Predicate {node_affinity.PREDICATE} failed: "
                         f"{node_affinity.DESCRIPTION}")
    ports = host_ports(pod)
    if ports:
        taken: set[tuple[str, str, int]] = set()
        for other in active:
            taken |= host_ports(other)
        if _ports_conflict(ports, taken):
            return Rejection(PORTS_PREDICATE,
                             f"Predicate {PORTS_PREDICATE} failed: {PORTS_DESCRIPTION}")
    if node is not None and node.taints and not is_static(pod):
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        if taints.untolerated_no_execute(node.taints, tolerations) is not None:
            return Rejection(taints.PREDICATE,
                             f"Predicate {taints.PREDICATE} failed: {taints.DESCRIPTION}")
    return None
