"""Admission against the node's NoExecute taints (upstream's TaintToleration check)."""
from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from kubelet_py.pods.admission import NodeIdentity, admit
from kubelet_py.pods.manager import PodManager
from kubelet_py.pods.reporting import LocalReporter
from kubelet_py.pods.taints import tolerates, untolerated_no_execute

from .fakes import ManualClock
from .test_admission import NODE, pod

DEDICATED = {"key": "dedicated", "value": "db", "effect": "NoExecute"}
NO_SCHEDULE = {"key": "gpu", "value": "yes", "effect": "NoSchedule"}


def node(*taints: dict[str, Any]) -> NodeIdentity:
    return NodeIdentity("n1", {"kubernetes.io/hostname": "n1"}, taints)


@pytest.mark.parametrize(("toleration", "ok"), [
    ({"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoExecute"}, True),
    ({"key": "dedicated", "value": "db"}, True),  # Equal by default, any effect
    ({"key": "dedicated", "operator": "Exists"}, True),
    ({"operator": "Exists"}, True),  # empty key with Exists: every taint
    ({"operator": "Exists", "effect": "NoExecute"}, True),
    ({"key": "dedicated", "operator": "Equal", "value": "web"}, False),
    ({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}, False),
    ({"key": "other", "operator": "Exists"}, False),
    ({"key": "dedicated", "operator": "Lt", "value": "5"}, False),
    ({"key": "dedicated", "operator": "Exists", "tolerationSeconds": 30}, True),
])
def test_one_toleration_against_one_taint(toleration: dict[str, Any], ok: bool) -> None:
    assert tolerates(toleration, DEDICATED) is ok


def test_only_no_execute_taints_count() -> None:
    assert untolerated_no_execute([NO_SCHEDULE], []) is None
    assert untolerated_no_execute([NO_SCHEDULE, DEDICATED], []) == DEDICATED
    both = [DEDICATED, {"key": "b", "effect": "NoExecute"}]
    assert untolerated_no_execute(both, [{"key": "dedicated", "operator": "Exists"}]) == \
        both[1]
    assert untolerated_no_execute(both, [{"operator": "Exists"}]) is None


def test_untolerated_no_execute_taint_rejects_the_pod() -> None:
    r = admit(pod("p"), [], NODE, node(DEDICATED))
    assert r is not None and r.reason == "TaintToleration"
    assert r.message == "Predicate TaintToleration failed: node(s) had taints that the pod " \
        "didn't tolerate"
    assert r.status(pod("p"))["message"] == f"Pod was rejected: {r.message}"
    assert r.status(pod("p"))["phase"] == "Failed"


def test_tolerated_or_other_effects_are_admitted() -> None:
    tolerant = pod("t", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "db",
                                      "effect": "NoExecute"}])
    assert admit(tolerant, [], NODE, node(DEDICATED)) is None
    assert admit(pod("p"), [], NODE, node(NO_SCHEDULE)) is None  # the scheduler's business
    assert admit(pod("p"), [], NODE, node()) is None


def test_static_pods_are_not_checked() -> None:
    static = pod("s")
    static["metadata"]["annotations"] = {"kubernetes.io/config.source": "file"}
    assert admit(static, [], NODE, node(DEDICATED)) is None
    static["metadata"]["annotations"]["kubernetes.io/config.source"] = "api"
    assert admit(static, [], NODE, node(DEDICATED)) is not None


def test_taints_come_after_resources_affinity_and_ports() -> None:
    assert admit(pod("big", cpu="5"), [], NODE, node(DEDICATED)).reason == \
        "OutOfcpu"  # type: ignore[union-attr]
    picky = pod("picky", nodeSelector={"disk": "ssd"})
    assert admit(picky, [], NODE, node(DEDICATED)).reason == \
        "NodeAffinity"  # type: ignore[union-attr]


def test_node_view_prefers_the_watched_node() -> None:
    from kubelet_py.app import NodeView
    from kubelet_py.client.informer import Store

    store = Store()
    view = NodeView({"kubernetes.io/hostname": "n1"}, name="n1", store=store)
    assert view.taints() == () and view.labels() == {"kubernetes.io/hostname": "n1"}

    class Status:
        node: dict[str, Any] | None = {"metadata": {"name": "n1", "labels": {"a": "1"}},
                                       "spec": {"taints": [NO_SCHEDULE]}}

    class Agent:
        status = Status()

    view.agent = Agent()  # type: ignore[assignment]
    assert view.taints() == (NO_SCHEDULE,) and view.labels() == {"a": "1"}
    store.apply("MODIFIED", {"metadata": {"name": "n1", "labels": {"b": "2"}},
                             "spec": {"taints": [DEDICATED]}})
    assert view.taints() == (DEDICATED,) and view.labels() == {"b": "2"}
    store.apply("MODIFIED", {"metadata": {"name": "n1"}, "spec": {}})
    assert view.taints() == ()


class _NodeView:
    def labels(self) -> dict[str, str]:
        return {"kubernetes.io/hostname": "n1"}

    def taints(self) -> tuple[dict[str, Any], ...]:
        return (DEDICATED,)


class _Recorder(LocalReporter):
    def __init__(self) -> None:
        super().__init__()
        self.finalized: list[str] = []
        self.events: list[str] = []

    async def finalize(self, pod: dict[str, Any]) -> None:
        self.finalized.append(pod["metadata"]["uid"])
        await super().finalize(pod)

    def event(self, pod: dict[str, Any], *, kind: str, reason: str, message: str) -> None:
        self.events.append(reason)


def test_manager_rejects_then_removes_a_rejected_pod_being_deleted() -> None:
    """The taint-eviction controller may delete the pod as the kubelet rejects it: the
    rejected pod, which never ran, gets its Failed status and is removed at once."""

    async def go() -> None:
        manager = PodManager(None, object(), node_name="n1",  # type: ignore[arg-type]
                             executor=object(), clock=ManualClock(),  # type: ignore[arg-type]
                             host_ips=(), cleanup=lambda uid: None, allocatable=NODE,
                             manifest_path=None, node=_NodeView())
        recorder = _Recorder()
        manager.reporter = recorder
        async with asyncio.TaskGroup() as tg:
            manager._group = tg
            intruder = pod("intruder")
            manager._on_event("ADDED", intruder)
            manager._on_event("MODIFIED", intruder)  # no deletion yet: nothing to do
        assert manager.rejected == {"intruder"} and not manager.workers
        assert recorder.events == ["TaintToleration"]
        assert recorder.statuses["intruder"]["reason"] == "TaintToleration"
        assert recorder.finalized == []
        deleting = copy.deepcopy(intruder)
        deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        async with asyncio.TaskGroup() as tg:
            manager._group = tg
            manager._on_event("MODIFIED", deleting)
            manager._on_event("MODIFIED", deleting)  # once only
        assert recorder.finalized == ["intruder"]
        manager._on_event("DELETED", deleting)
        assert manager.rejected == set() and not manager.workers

    asyncio.run(go())
