"""Taints and tolerations, as the kubelet's admission checks them (pure).

The kubelet re-checks only the node's `NoExecute` taints (the scheduler owns `NoSchedule`
and `PreferNoSchedule`): a pod bound to the node that does not tolerate one of them is
rejected, as upstream does. Static pods are not checked.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

NO_EXECUTE = "NoExecute"
PREDICATE = "TaintToleration"
DESCRIPTION = "node(s) had taints that the pod didn't tolerate"

Obj = Mapping[str, Any]


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """Whether one toleration matches one taint.

    An empty effect matches every effect; an empty key with `Exists` matches every key;
    `Exists` ignores the value, `Equal` (the default) needs the same value. Other operators
    (`Lt`/`Gt`, behind an alpha feature gate upstream) tolerate nothing here.
    """
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def untolerated_no_execute(taints: Iterable[Obj], tolerations: Iterable[Obj]) -> Obj | None:
    """The first NoExecute taint none of the tolerations matches, or None."""
    tolerations = list(tolerations)
    for taint in taints:
        if taint.get("effect") != NO_EXECUTE:
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None
