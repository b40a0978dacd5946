from __future__ import annotations

from typing import Any

from kubelet_py.node.allocatable import Allocatable
from kubelet_py.pods.admission import admit, pod_requests

NODE = Allocatable(cpu_millis=2000, memory_bytes=4 * 2**30,
                   ephemeral_storage_bytes=10 * 2**30, pods=4)


def pod(name: str, *, cpu: str | None = None, memory: str | None = None,
        ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    container: dict[str, Any] = {"name": "c", "image": "i",
                                 "resources": {"requests": requests} if requests else {}}
    if ports:
        container["ports"] = ports
    return {"metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"containers": [container], **spec}}


def test_fits() -> None:
    assert admit(pod("a", cpu="1", memory="1Gi"), [pod("b", cpu="1")], NODE) is None


def test_out_of_pods() -> None:
    r = admit(pod("new"), [pod(str(i)) for i in range(4)], NODE)
    assert r is not None and r.reason == "OutOfpods"
    assert r.message == "Node didn't have enough resource: pods, requested: 1, used: 4, " \
        "capacity: 4"


def test_out_of_cpu_and_memory() -> None:
    r = admit(pod("big", cpu="1500m"), [pod("b", cpu="1")], NODE)
    assert r is not None and r.reason == "OutOfcpu"
    assert r.message == "Node didn't have enough resource: cpu, requested: 1500, used: 1000, " \
        "capacity: 2000"
    r = admit(pod("big", memory="5Gi"), [], NODE)
    assert r is not None and r.reason == "OutOfmemory" and "requested: 5368709120" in r.message
    status = r.status(pod("big", memory="5Gi"))
    assert status == {"phase": "Failed", "reason": "OutOfmemory",
                      "message": "Pod was rejected: " + r.message, "qosClass": "Burstable"}


def test_ephemeral_storage_and_overhead() -> None:
    p = pod("e", overhead={"cpu": "250m"})
    p["spec"]["containers"][0]["resources"] = {"requests": {"ephemeral-storage": "11Gi"}}
    r = admit(p, [], NODE)
    assert r is not None and r.reason == "OutOfephemeral-storage"
    assert pod_requests(p)["cpu"] == 250


def test_init_containers_count_at_their_peak() -> None:
    p = pod("i", cpu="500m")
    p["spec"]["initContainers"] = [
        {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
        {"name": "setup", "resources": {"requests": {"cpu": "1"}}},
        {"name": "late-side", "restartPolicy": "Always",
         "resources": {"requests": {"cpu": "200m"}}}]
    # apps + sidecars = 800m; "setup" runs beside "side" only: 1100m.
    assert pod_requests(p)["cpu"] == 1100
    p["spec"]["resources"] = {"requests": {"cpu": "300m"}}
    assert pod_requests(p)["cpu"] == 300  # pod-level resources win


def test_host_port_conflicts() -> None:
    web = pod("web", ports=[{"containerPort": 80, "hostPort": 8080}])
    same = pod("same", ports=[{"containerPort": 81, "hostPort": 8080, "protocol": "TCP"}])
    r = admit(same, [web], NODE)
    assert r is not None and r.reason == "NodePorts"
    assert r.message == "Predicate NodePorts failed: node(s) didn't have free ports for the " \
        "requested pod ports"
    udp = pod("udp", ports=[{"containerPort": 81, "hostPort": 8080, "protocol": "UDP"}])
    assert admit(udp, [web], NODE) is None
    on_ip = pod("ip", ports=[{"containerPort": 81, "hostPort": 9090, "hostIP": "127.0.0.2"}])
    other_ip = pod("ip2", ports=[{"containerPort": 81, "hostPort": 9090,
                                  "hostIP": "127.0.0.3"}])
    wildcard = pod("any", ports=[{"containerPort": 81, "hostPort": 9090}])
    assert admit(other_ip, [on_ip], NODE) is None
    assert admit(wildcard, [on_ip], NODE) is not None
    assert admit(on_ip, [wildcard], NODE) is not None


def test_resources_are_checked_before_ports() -> None:
    web = pod("web", cpu="2", ports=[{"containerPort": 80, "hostPort": 8080}])
    r = admit(pod("x", cpu="1", ports=[{"containerPort": 80, "hostPort": 8080}]), [web], NODE)
    assert r is not None and r.reason == "OutOfcpu"


class _Worker:
    def __init__(self, pod: dict[str, Any], *, done: bool = False) -> None:
        self.pod = pod
        self.done = done


def test_manager_rejects_and_never_runs_a_pod_that_does_not_fit() -> None:
    import asyncio

    from kubelet_py.pods.manager import PodManager
    from kubelet_py.pods.reporting import LocalReporter

    from .fakes import ManualClock

    async def go() -> None:
        manager = PodManager(None, object(), node_name="n1",  # type: ignore[arg-type]
                             executor=object(), clock=ManualClock(),  # type: ignore[arg-type]
                             host_ips=(), cleanup=lambda uid: None, allocatable=NODE,
                             manifest_path=None)
        web = pod("web", cpu="1", ports=[{"containerPort": 80, "hostPort": 8080}])
        finished = pod("old", cpu="2")
        manager.workers = {"web": _Worker(web), "old": _Worker(finished, done=True)}  # type: ignore[dict-item]
        async with asyncio.TaskGroup() as tg:
            manager._group = tg
            taker = pod("taker", ports=[{"containerPort": 80, "hostPort": 8080}])
            manager._on_event("ADDED", taker)
            hog = pod("hog", cpu="1500m")
            manager._on_event("ADDED", hog)
        assert manager.rejected == {"taker", "hog"}
        assert set(manager.workers) == {"web", "old"}  # no worker for the rejected
        reporter = manager.reporter
        assert isinstance(reporter, LocalReporter)
        assert reporter.statuses["taker"]["reason"] == "NodePorts"
        assert reporter.statuses["taker"]["phase"] == "Failed"
        assert reporter.statuses["hog"]["reason"] == "OutOfcpu"
        # Later updates of a rejected pod are ignored; its deletion forgets it.
        manager._on_event("MODIFIED", taker)
        assert set(manager.workers) == {"web", "old"}
        manager._on_event("DELETED", taker)
        assert manager.rejected == {"hog"}

    asyncio.run(go())


def test_unknown_runtime_class_is_the_upstream_sandbox_error() -> None:
    import asyncio

    import pytest

    from kubelet_py.client.errors import NotFound
    from kubelet_py.pods.executor import SandboxError
    from kubelet_py.pods.manager import PodManager

    from .fakes import ManualClock

    class Rest:
        async def get(self, path: str, *, params: Any = None) -> dict[str, Any]:
            if path.endswith("/runtimeclasses/fast"):
                return {"handler": "crun"}
            raise NotFound(404, "NotFound", "not found")

    manager = PodManager(Rest(), object(), node_name="n1",  # type: ignore[arg-type]
                         executor=object(), clock=ManualClock(),  # type: ignore[arg-type]
                         host_ips=(), cleanup=lambda uid: None, allocatable=NODE)
    assert asyncio.run(manager._handler(pod("a", runtimeClassName="fast"))) == "crun"
    assert asyncio.run(manager._handler(pod("a"))) == ""
    with pytest.raises(SandboxError) as info:
        asyncio.run(manager._handler(pod("a", runtimeClassName="gone")))
    assert str(info.value) == \
        'Failed to create pod sandbox: runtimeclasses.node.k8s.io "gone" not found'


def test_leftovers_of_a_rejected_pod_are_removed_at_startup() -> None:
    import asyncio

    from cri.api import runtime_pb2 as pb
    from kubelet_py.pods.manager import PodManager

    from .fakes import ManualClock

    boxes = [pb.PodSandbox(id=f"sb-{uid}", labels={"io.kubernetes.pod.uid": uid})
             for uid in ("kept", "rejected", "gone")]

    class Sandboxes:
        async def list(self, *, labels: dict[str, str] | None = None) -> list[pb.PodSandbox]:
            return [b for b in boxes if not labels or
                    b.labels["io.kubernetes.pod.uid"] == labels["io.kubernetes.pod.uid"]]

        async def status(self, sandbox_id: str) -> pb.PodSandboxStatus:
            return pb.PodSandboxStatus(id=sandbox_id, created_at=1)

    class Containers:
        async def list(self, *, labels: dict[str, str] | None = None) -> list[pb.Container]:
            return []

    class Cri:
        sandboxes = Sandboxes()
        containers = Containers()

    class Exec:
        removed: list[str] = []

        async def kill_pod(self, runtime: Any, *, grace: int) -> None:
            pass

        async def remove_pod(self, runtime: Any) -> None:
            self.removed += [s.id for s in runtime.sandboxes]

    executor = Exec()
    manager = PodManager(None, Cri(), node_name="n1",  # type: ignore[arg-type]
                         executor=executor, clock=ManualClock(),  # type: ignore[arg-type]
                         host_ips=(), cleanup=lambda uid: None, allocatable=NODE)
    manager.workers = {"kept": _Worker(pod("kept"))}  # type: ignore[dict-item]
    manager.rejected = {"rejected"}
    assert asyncio.run(manager.reconcile_orphans()) == 2
    assert sorted(executor.removed) == ["sb-gone", "sb-rejected"]


def test_a_spec_admission_cannot_read_is_rejected_not_crashed() -> None:
    import asyncio

    from kubelet_py.pods.manager import PodManager
    from kubelet_py.pods.reporting import LocalReporter

    from .fakes import ManualClock

    async def go() -> None:
        manager = PodManager(None, object(), node_name="n1",  # type: ignore[arg-type]
                             executor=object(), clock=ManualClock(),  # type: ignore[arg-type]
                             host_ips=(), cleanup=lambda uid: None, allocatable=NODE)
        weird = pod("weird")
        weird["spec"]["containers"][0]["ports"] = [{"hostPort": "eighty"}]
        async with asyncio.TaskGroup() as tg:
            manager._group = tg
            manager._on_event("ADDED", weird)
        reporter = manager.reporter
        assert isinstance(reporter, LocalReporter)
        assert reporter.statuses["weird"]["reason"] == "UnexpectedAdmissionError"
        assert not manager.workers

    asyncio.run(go())


def _affinity(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}


def test_node_selector_and_required_affinity() -> None:
    from kubelet_py.pods.node_affinity import node_matches

    labels = {"disk": "ssd", "zone": "a", "cores": "8"}

    def ok(**spec: Any) -> bool:
        return node_matches(pod("p", **spec), node_name="n1", labels=labels)

    assert ok() and ok(nodeSelector={"disk": "ssd"})
    assert not ok(nodeSelector={"disk": "hdd"}) and not ok(nodeSelector={"gpu": "yes"})
    expr = lambda key, op, *v: {"matchExpressions": [  # noqa: E731
        {"key": key, "operator": op, "values": list(v)}]}
    assert ok(affinity=_affinity(expr("zone", "In", "a", "b")))
    assert not ok(affinity=_affinity(expr("zone", "NotIn", "a")))
    assert ok(affinity=_affinity(expr("zone", "NotIn", "b")))
    assert ok(affinity=_affinity(expr("disk", "Exists")))
    assert ok(affinity=_affinity(expr("gpu", "DoesNotExist")))
    assert ok(affinity=_affinity(expr("cores", "Gt", "4")))
    assert not ok(affinity=_affinity(expr("cores", "Lt", "4")))
    assert not ok(affinity=_affinity(expr("zone", "Gt", "4")))  # not a number
    # Terms are ORed; an empty term matches nothing.
    assert ok(affinity=_affinity(expr("zone", "In", "z"), expr("disk", "In", "ssd")))
    assert not ok(affinity=_affinity({}))
    fields = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    assert ok(affinity=_affinity(fields))
    fields["matchFields"][0]["values"] = ["n2"]
    assert not ok(affinity=_affinity(fields))


def test_affinity_rejection_comes_after_resources_and_before_ports() -> None:
    from kubelet_py.pods.admission import NodeIdentity

    node = NodeIdentity("n1", {"kubernetes.io/hostname": "n1"})
    picky = pod("picky", nodeSelector={"disk": "ssd"})
    r = admit(picky, [], NODE, node)
    assert r is not None and r.reason == "NodeAffinity"
    assert r.message == "Predicate NodeAffinity failed: node(s) didn't match Pod's node " \
        "affinity/selector"
    assert admit(picky, [], NODE) is None  # no node view: not checked
    big = pod("big", cpu="5", nodeSelector={"disk": "ssd"})
    assert admit(big, [], NODE, node).reason == "OutOfcpu"  # type: ignore[union-attr]


def test_node_labels_follow_the_registered_node() -> None:
    from kubelet_py.app import NodeView

    view = NodeView({"kubernetes.io/hostname": "n1"})
    assert view.labels() == {"kubernetes.io/hostname": "n1"}

    class Status:
        node: dict[str, Any] | None = {"metadata": {"labels": {"disk": "ssd"}}}

    class Agent:
        status = Status()

    view.agent = Agent()  # type: ignore[assignment]
    assert view.labels() == {"disk": "ssd"}
