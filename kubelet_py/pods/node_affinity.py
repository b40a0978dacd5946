"""Whether a pod's nodeSelector and required node affinity accept this node (pure).

The same rules as the scheduler: every nodeSelector label must match; of the required
nodeSelectorTerms at least one must hold, a term holding when all its matchExpressions (on
labels) and matchFields (on `metadata.name`) do; an empty term matches nothing."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubelet_py.pods.model import Pod

Obj = dict[str, Any]
PREDICATE = "NodeAffinity"
DESCRIPTION = "node(s) didn't match Pod's node affinity/selector"


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _requirement(req: Obj, values: Mapping[str, str]) -> bool:
    key, op = req.get("key", ""), req.get("operator", "")
    wanted = [str(v) for v in req.get("values") or []]
    present = key in values
    if op == "In":
        return present and values[key] in wanted
    if op == "NotIn":
        return not present or values[key] not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(wanted) == 1:
        have, limit = _int(values[key]), _int(wanted[0])
        if have is None or limit is None:
            return False
        return have > limit if op == "Gt" else have < limit
    return False


def _term(term: Obj, labels: Mapping[str, str], node_name: str) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    return all(_requirement(r, labels) for r in exprs) and \
        all(_requirement(r, {"metadata.name": node_name}) for r in fields)


def node_matches(pod: Pod, *, node_name: str, labels: Mapping[str, str]) -> bool:
    spec = pod.get("spec") or {}
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(_term(t, labels, node_name) for t in required.get("nodeSelectorTerms") or [])
