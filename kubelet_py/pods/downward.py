"""Downward API values: pod fields (`fieldRef`) and container resources (`resourceFieldRef`),
shared by environment variables and downwardAPI volumes."""
from __future__ import annotations

import dataclasses
import re
from decimal import ROUND_CEILING, Decimal
from typing import Any

from kubelet_py.errors import KubeletError
from kubelet_py.node.allocatable import Allocatable
from kubelet_py.pods.model import Pod
from kubelet_py.pods.quantity import QuantityError, parse_quantity

Obj = dict[str, Any]
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")
_RESOURCES = ("cpu", "memory", "ephemeral-storage")


class DownwardError(KubeletError):
    """A fieldRef or resourceFieldRef this node cannot resolve."""


@dataclasses.dataclass(frozen=True)
class PodPlacement:
    """What the node knows about a pod beyond its spec: where it runs and its addresses."""

    node_name: str
    host_ips: tuple[str, ...] = ()
    pod_ips: tuple[str, ...] = ()


def field_value(pod: Pod, path: str, where: PodPlacement) -> str:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    simple = {"metadata.name": meta.get("name", ""),
              "metadata.namespace": meta.get("namespace", ""),
              "metadata.uid": meta.get("uid", ""),
              "spec.nodeName": spec.get("nodeName") or where.node_name,
              "spec.serviceAccountName": spec.get("serviceAccountName", ""),
              "status.hostIP": where.host_ips[0] if where.host_ips else "",
              "status.hostIPs": ",".join(where.host_ips),
              "status.podIP": where.pod_ips[0] if where.pod_ips else "",
              "status.podIPs": ",".join(where.pod_ips)}
    if path in simple:
        return str(simple[path])
    match = _SUBSCRIPT.match(path)
    if match is not None:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(items.items()))
    raise DownwardError(f'unsupported fieldPath: "{path}"')


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _container(pod: Pod, name: str) -> Obj:
    spec = pod.get("spec") or {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if c.get("name") == name:
            return dict(c)
    raise DownwardError(f'container "{name}" not found in pod')


def resource_value(pod: Pod, container: Obj | None, selector: Obj,
                   allocatable: Allocatable) -> str:
    """A container's request or limit divided by the divisor, rounded up; a missing limit
    is the node's allocatable, as upstream defaults it for the downward API."""
    if selector.get("containerName"):
        container = _container(pod, selector["containerName"])
    if container is None:
        raise DownwardError("resourceFieldRef needs a containerName here")
    kind, _, resource = str(selector.get("resource", "")).partition(".")
    if kind not in ("limits", "requests") or not (
            resource in _RESOURCES or resource.startswith("hugepages-")):
        raise DownwardError(f'unsupported container resource: "{selector.get("resource")}"')
    res = container.get("resources") or {}
    try:
        divisor = parse_quantity(selector.get("divisor") or "1")
        raw = (res.get(kind) or {}).get(resource)
        amount = parse_quantity(raw) if raw is not None else None
    except QuantityError as exc:
        raise DownwardError(str(exc)) from exc
    if divisor <= 0:
        raise DownwardError(f'divisor "{selector.get("divisor")}" must be positive')
    if amount is None:
        defaults = {"cpu": Decimal(allocatable.cpu_millis) / 1000,
                    "memory": Decimal(allocatable.memory_bytes),
                    "ephemeral-storage": Decimal(allocatable.ephemeral_storage_bytes)}
        amount = defaults.get(resource, Decimal(0)) if kind == "limits" else Decimal(0)
    if resource == "cpu":
        # Whole millicores first, as the API's MilliValue() rounds.
        amount = (amount * 1000).to_integral_value(rounding=ROUND_CEILING) / 1000
        divisor = (divisor * 1000).to_integral_value(rounding=ROUND_CEILING) / 1000
    else:
        amount = amount.to_integral_value(rounding=ROUND_CEILING)
        divisor = divisor.to_integral_value(rounding=ROUND_CEILING)
    return str(int((amount / divisor).to_integral_value(rounding=ROUND_CEILING)))
