"""The pod's QoS class from its containers' requests and limits."""
from __future__ import annotations

from typing import Any

from kubelet_py.pods.model import Pod

RESOURCES = ("cpu", "memory")


def qos_class(pod: Pod) -> str:
    spec: dict[str, Any] = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits = {k: v for k, v in (res.get("limits") or {}).items() if k in RESOURCES}
        requests = {k: v for k, v in (res.get("requests") or {}).items() if k in RESOURCES}
        requests = {**limits, **requests}  # requests default to limits
        if limits or requests:
            any_set = True
        if set(limits) != set(RESOURCES) or any(requests.get(k) != limits[k] for k in limits):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
