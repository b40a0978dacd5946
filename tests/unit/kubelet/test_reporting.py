from __future__ import annotations

import asyncio

from kubelet_py.client.errors import Conflict
from kubelet_py.pods.reporting import ApiReporter, MirrorReporter
from kubelet_py.pods.static import MIRROR, static_pod

from .fake_api import FakeRest
from .fakes import ManualClock, run_async
from .test_planner import pod

POD = "/api/v1/namespaces/default/pods/p"


@run_async
async def test_status_patched_only_when_changed() -> None:
    api, clock = FakeRest(), ManualClock()
    api.objects[POD] = {"metadata": {"name": "p", "resourceVersion": "1"}, "status": {}}
    rep = ApiReporter(api, node_name="n1", clock=clock)  # type: ignore[arg-type]
    p = pod("web")
    await rep.report(p, {"phase": "Pending"})
    await rep.report(p, {"phase": "Pending"})
    await rep.report(p, {"phase": "Running"})
    assert [c for c in api.calls if c[0] == "PATCH"] == [("PATCH", POD + "/status")] * 2
    assert api.objects[POD]["status"]["phase"] == "Running"
    assert api.objects[POD]["metadata"]["uid"] == "u1"  # the patch names the pod's UID


@run_async
async def test_events_deduplicated_for_a_minute() -> None:
    api, clock = FakeRest(), ManualClock()
    rep = ApiReporter(api, node_name="n1", clock=clock)  # type: ignore[arg-type]
    p = pod("web")
    for _ in range(3):
        rep.event(p, kind="Warning", reason="Failed", message="Error: ErrImagePull")
    clock.advance(61)
    rep.event(p, kind="Warning", reason="Failed", message="Error: ErrImagePull")
    await asyncio.sleep(0)
    posts = [c for c in api.calls if c[0] == "POST"]
    assert len(posts) == 2


@run_async
async def test_finalize_tolerates_gone_or_replaced_pod() -> None:
    api, clock = FakeRest(), ManualClock()
    rep = ApiReporter(api, node_name="n1", clock=clock)  # type: ignore[arg-type]
    await rep.finalize(pod("web"))  # already gone: NotFound is fine
    api.objects[POD] = {"metadata": {"name": "p"}}
    api.fail[("DELETE", POD)] = Conflict(409, "Conflict", "uid precondition")
    await rep.finalize(pod("web"))  # a new pod took the name: leave it alone
    assert POD in api.objects


@run_async
async def test_mirror_created_with_node_owner_and_replaced_on_edit() -> None:
    api, clock = FakeRest(), ManualClock()
    api.objects["/api/v1/nodes/n1"] = {"metadata": {"name": "n1", "uid": "node-uid"}}
    seen: dict[str, dict[str, object]] = {}
    mirror = MirrorReporter(api, ApiReporter(api, node_name="n1", clock=clock),  # type: ignore[arg-type]
                            seen.get, node_name="n1")
    manifest = {"kind": "Pod", "metadata": {"name": "web"},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
    static = static_pod(manifest, node_name="n1", source="f")
    path = "/api/v1/namespaces/default/pods/web-n1"
    await mirror.report(static, {"phase": "Running"})
    created = api.objects[path]
    assert created["metadata"]["ownerReferences"][0]["uid"] == "node-uid"
    assert created["metadata"]["annotations"][MIRROR] == static["metadata"]["uid"]
    assert created["status"]["phase"] == "Running"
    seen["default/web-n1"] = created
    manifest["spec"]["containers"][0]["image"] = "busybox:1.37"
    edited = static_pod(manifest, node_name="n1", source="f")
    await mirror.report(edited, {"phase": "Pending"})
    assert ("DELETE", path) in api.calls
    assert api.objects[path]["metadata"]["annotations"][MIRROR] == edited["metadata"]["uid"]
