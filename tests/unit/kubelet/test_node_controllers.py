from __future__ import annotations

import asyncio
import dataclasses

import pytest

from kubelet_py.client.errors import Forbidden
from kubelet_py.node.lease import LeaseController
from kubelet_py.node.setters import NodeFacts, RuntimeCondition, RuntimeHandler
from kubelet_py.node.status import Frequencies, NodeStatusController, RegistrationForbidden

from .fake_api import FakeRest
from .fakes import ManualClock, run_async
from .test_node_setters import FACTS, RUNTIME

NODE = "/api/v1/nodes/node-a"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-a"


class Sink:
    def __init__(self) -> None:
        self.cidrs: list[str] = []

    async def update_pod_cidr(self, cidr: str) -> None:
        self.cidrs.append(cidr)


def controller(api: FakeRest, clock: ManualClock, facts: list[NodeFacts],
               sink: Sink | None = None) -> NodeStatusController:
    async def current() -> NodeFacts:
        return facts[0]

    return NodeStatusController(api, facts=current, labels={}, clock=clock,  # type: ignore[arg-type]
                                pod_cidr_sink=sink, frequencies=Frequencies(10.0, 300.0))


@run_async
async def test_register_then_patch_only_on_change_or_report_period() -> None:
    api, clock, facts = FakeRest(), ManualClock(), [FACTS]
    ctl = controller(api, clock, facts)
    await ctl.register()
    assert api.objects[NODE]["metadata"]["labels"]["kubernetes.io/hostname"] == "node-a"
    assert await ctl.sync_once()  # first report
    clock.advance(10)
    assert not await ctl.sync_once()  # nothing changed, not yet due
    not_ready = RuntimeCondition(ready=False, reason="NetworkPluginNotReady", message="no cni")
    facts[0] = dataclasses.replace(FACTS, runtime=dataclasses.replace(RUNTIME, network=not_ready))
    clock.advance(10)
    assert await ctl.sync_once()  # Ready flipped
    ready = {c["type"]: c for c in api.objects[NODE]["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False"
    clock.advance(10)
    assert not await ctl.sync_once()
    clock.advance(300)
    assert await ctl.sync_once()  # the report period forces a heartbeat patch
    assert ctl.patches == 3


@run_async
async def test_runtime_handlers_patched_and_removed() -> None:
    api, clock = FakeRest(), ManualClock()
    handlers = (RuntimeHandler(name="", recursive_read_only_mounts=True, user_namespaces=True),)
    facts = [dataclasses.replace(FACTS, runtime=dataclasses.replace(RUNTIME, handlers=handlers))]
    ctl = controller(api, clock, facts)
    await ctl.register()
    assert await ctl.sync_once()
    assert api.objects[NODE]["status"]["runtimeHandlers"] == [
        {"name": "", "features": {"recursiveReadOnlyMounts": True, "userNamespaces": True}}]
    clock.advance(10)
    assert not await ctl.sync_once()  # unchanged handlers are no reason to patch
    facts[0] = dataclasses.replace(FACTS, runtime=dataclasses.replace(RUNTIME, handlers=()))
    clock.advance(10)
    assert await ctl.sync_once()  # the runtime stopped reporting handlers: field deleted
    assert "runtimeHandlers" not in api.objects[NODE]["status"]
    clock.advance(10)
    assert not await ctl.sync_once()


@run_async
async def test_register_reuses_existing_node() -> None:
    api, clock = FakeRest(), ManualClock()
    api.objects[NODE] = {"metadata": {"name": "node-a", "uid": "u0", "resourceVersion": "1",
                                      "labels": {"kubernetes.io/hostname": "stale"}}}
    node = await controller(api, clock, [FACTS]).register()
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node-a"
    assert node["metadata"]["uid"] == "u0"


@run_async
async def test_register_forbidden_is_fatal_with_clear_message() -> None:
    api = FakeRest()
    api.fail[("POST", "/api/v1/nodes")] = Forbidden(403, "Forbidden", "node x cannot create")
    with pytest.raises(RegistrationForbidden, match="CN match"):
        await controller(api, ManualClock(), [FACTS]).register()
    assert api.calls == [("POST", "/api/v1/nodes")]  # tried once, not looped


@run_async
async def test_status_patch_forbidden_not_retried_within_period() -> None:
    api, clock = FakeRest(), ManualClock()
    ctl = controller(api, clock, [FACTS])
    await ctl.register()
    api.fail[("PATCH", NODE + "/status")] = Forbidden(403, "Forbidden", "NodeRestriction")
    task = asyncio.create_task(ctl.run())
    for _ in range(50):
        await asyncio.sleep(0)
    task.cancel()
    patches = [c for c in api.calls if c[0] == "PATCH"]
    sleeps = clock.sleeps
    assert len(patches) == len(sleeps) or len(patches) == len(sleeps) + 1
    assert all(s == 10.0 for s in sleeps)  # one attempt per period, never a hot loop


@run_async
async def test_pod_cidr_passed_to_runtime_once() -> None:
    api, clock, sink = FakeRest(), ManualClock(), Sink()
    ctl = controller(api, clock, [FACTS], sink)
    await ctl.register()
    await ctl.sync_once()
    assert sink.cidrs == []
    api.objects[NODE]["spec"] = {"podCIDR": "10.244.1.0/24"}
    await ctl.sync_once()
    await ctl.sync_once()
    assert sink.cidrs == ["10.244.1.0/24"]


@run_async
async def test_lease_created_with_owner_then_renewed() -> None:
    api, clock = FakeRest(), ManualClock()
    lease = LeaseController(api, "node-a", clock=clock)  # type: ignore[arg-type]
    lease.set_node_uid("uid-node-a")
    await lease.renew_once()
    obj = api.objects[LEASE]
    assert obj["spec"]["leaseDurationSeconds"] == 40
    assert obj["spec"]["holderIdentity"] == "node-a"
    assert obj["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "uid-node-a"}]
    first = obj["spec"]["renewTime"]
    assert first == "2026-01-01T00:00:00.000000Z"
    clock.advance(10)
    await lease.renew_once()
    assert api.objects[LEASE]["spec"]["renewTime"] == "2026-01-01T00:00:10.000000Z"
    assert lease.renewals == 2


@run_async
async def test_lease_conflict_rereads() -> None:
    api, clock = FakeRest(), ManualClock()
    lease = LeaseController(api, "node-a", clock=clock)  # type: ignore[arg-type]
    await lease.renew_once()
    api.objects[LEASE]["metadata"]["resourceVersion"] = "999"  # someone else wrote it
    task = asyncio.create_task(lease.run())
    for _ in range(50):
        await asyncio.sleep(0)
    task.cancel()
    assert lease.renewals >= 2
    assert clock.sleeps[0] == 0.2  # the conflict retried quickly, then the 10 s period
    assert 10.0 in clock.sleeps
