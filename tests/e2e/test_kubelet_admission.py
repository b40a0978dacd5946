"""Pods the node cannot run, on the real control plane and both runtimes: rejected at
admission (host port taken, CPU or memory beyond allocatable, more pods than --max-pods)
with phase Failed, the upstream reason and an event; a RuntimeClass gone by the time the pod
reaches the node fails its sandbox with the upstream message. The node keeps serving."""
from __future__ import annotations

import json
import random
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_kubelet_join import wait
from tests.e2e.test_kubelet_pods import (  # noqa: F401 (fixtures)
    BUSYBOX,
    Node,
    _events,
    _ready,
    _state,
    containerd,
    engined,
    local_registry,
    runtime,
)
from tests.harness.cluster import ControlPlane

pytestmark = pytest.mark.e2e
MAX_PODS = 5
# Exits at once on SIGTERM (a bare `sleep` as PID 1 ignores it): a delete then takes a moment,
# not the whole grace period, and each test frees its places quickly for the next one.
SLEEP = [{"name": "c", "image": BUSYBOX,
          "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]


@pytest.fixture(scope="module")
def small(control_plane: ControlPlane, runtime: Any,  # noqa: F811
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node with room for MAX_PODS pods (its static pod is one of them)."""
    n = Node(control_plane, runtime, tmp_path_factory.mktemp("kubelet-admit"),
             extra=("--max-pods", str(MAX_PODS)))
    try:
        control_plane.kubectl("create", "namespace", n.namespace)
        wait(lambda: _ready(n.get("node", n.name)), "node Ready", timeout=60)
        yield n
    finally:
        control_plane.kubectl("delete", "namespace", n.namespace, "--wait=false", check=False)
        n.kubelet.stop()
        control_plane.kubectl("delete", "node", n.name, "--wait=false", check=False)
        print(n.kubelet.output()[-3000:])


def _phase(node: Node, name: str) -> str:
    return str(((node.pod(name) or {}).get("status") or {}).get("phase", ""))


def _rejected(node: Node, name: str, reason: str) -> dict[str, Any]:
    status = wait(lambda: (s := (node.pod(name) or {}).get("status") or {}).get("phase")
                  == "Failed" and s, f"{name} Failed", timeout=60)
    assert status["reason"] == reason, status
    assert status["message"].startswith("Pod was rejected: "), status
    wait(lambda: any(e["reason"] == reason for e in _events(node, name)),
         f"a {reason} event", timeout=60)
    return dict(status)


def _delete(node: Node, *names: str) -> None:
    node.cluster.kubectl("delete", "pod", "-n", node.namespace, *names, "--wait=true",
                         "--timeout=60s", check=False)


def test_host_port_taken(small: Node) -> None:
    port = random.randint(20000, 29999)
    first = [{**SLEEP[0], "ports": [{"containerPort": 80, "hostPort": port,
                                     "hostIP": "127.0.0.1"}]}]
    second = [{**SLEEP[0], "ports": [{"containerPort": 81, "hostPort": port}]}]
    small.create_pod("holder", first)
    wait(lambda: _phase(small, "holder") == "Running", "holder Running", timeout=60)
    small.create_pod("taker", second)
    status = _rejected(small, "taker", "NodePorts")
    assert status["message"] == "Pod was rejected: Predicate NodePorts failed: node(s) " \
        "didn't have free ports for the requested pod ports"
    assert not _state(small.pod("taker"))  # no container was ever made
    assert _phase(small, "holder") == "Running"
    _delete(small, "holder", "taker")


@pytest.mark.parametrize("resource,amount,reason", [
    ("cpu", "1000", "OutOfcpu"), ("memory", "100Ti", "OutOfmemory")])
def test_requests_beyond_allocatable(small: Node, resource: str, amount: str,
                                     reason: str) -> None:
    name = f"big-{resource}"
    small.create_pod(name, [{**SLEEP[0], "resources": {"requests": {resource: amount}}}])
    status = _rejected(small, name, reason)
    allocatable = small.get("node", small.name)["status"]["allocatable"][resource]
    assert f"Node didn't have enough resource: {resource}, requested: " in status["message"]
    assert allocatable
    _delete(small, name)


def test_more_pods_than_max_pods(small: Node) -> None:
    # The static pod holds one place; fill the rest, then one more is refused.
    names = [f"fill-{i}" for i in range(MAX_PODS - 1)]
    for name in names:
        small.create_pod(name, SLEEP)
    for name in names:
        wait(lambda n=name: _phase(small, n) == "Running", f"{name} Running", timeout=90)
    small.create_pod("one-too-many", SLEEP)
    status = _rejected(small, "one-too-many", "OutOfpods")
    assert status["message"] == "Pod was rejected: Node didn't have enough resource: pods, " \
        f"requested: 1, used: {MAX_PODS}, capacity: {MAX_PODS}"
    _delete(small, "one-too-many", *names)


def test_runtime_class_gone_before_the_pod_reaches_the_node(small: Node) -> None:
    """The apiserver refuses pods naming an unknown RuntimeClass, so the class exists at
    creation, is deleted while the pod waits unscheduled, then the pod is bound here."""
    rc = f"kpy-{secrets.token_hex(3)}"
    small.cluster.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": rc},
        "handler": "runc"}))
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "rc-gone", "namespace": small.namespace},
            "spec": {"schedulerName": "nobody", "runtimeClassName": rc,
                     "terminationGracePeriodSeconds": 1, "containers": SLEEP}}
    small.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))
    small.cluster.kubectl("delete", "runtimeclass", rc)
    binding = {"apiVersion": "v1", "kind": "Binding",
               "metadata": {"name": "rc-gone", "namespace": small.namespace},
               "target": {"apiVersion": "v1", "kind": "Node", "name": small.name}}
    small.cluster.kubectl("create", "-f", "-", stdin=json.dumps(binding))
    want = f'Failed to create pod sandbox: runtimeclasses.node.k8s.io "{rc}" not found'
    wait(lambda: any(e["reason"] == "FailedCreatePodSandBox" and e["message"] == want
                     for e in _events(small, "rc-gone")), "FailedCreatePodSandBox", timeout=60)
    # the event and the status are posted apart, in no fixed order
    wait(lambda: _state(small.pod("rc-gone")).get("state", {}).get("waiting", {}).get(
        "reason") == "ContainerCreating", "the ContainerCreating status", timeout=60)
    _delete(small, "rc-gone")


def test_node_selector_that_does_not_match(small: Node) -> None:
    small.create_pod("picky", SLEEP, nodeSelector={"kubelet-py.test/disk": "ssd"})
    status = _rejected(small, "picky", "NodeAffinity")
    assert status["message"] == "Pod was rejected: Predicate NodeAffinity failed: node(s) " \
        "didn't match Pod's node affinity/selector"
    small.create_pod("matching", SLEEP, nodeSelector={"kubernetes.io/hostname": small.name})
    wait(lambda: _phase(small, "matching") == "Running", "matching Running", timeout=60)
    _delete(small, "picky", "matching")


def test_no_execute_taint_not_tolerated(small: Node) -> None:
    """The kubelet re-checks the node's NoExecute taints: a pod bound here without a
    matching toleration is rejected (the taint-eviction controller may also delete it, so
    the event is what is asserted); a pod that tolerates the taint runs."""
    taint = f"kubelet-py.test/dedicated-{secrets.token_hex(2)}"
    small.cluster.kubectl("taint", "node", small.name, f"{taint}=db:NoExecute")
    try:
        small.create_pod("untolerated", SLEEP)
        message = "Predicate TaintToleration failed: node(s) had taints that the pod " \
            "didn't tolerate"
        wait(lambda: any(e["reason"] == "TaintToleration" and e["message"] == message
                         for e in _events(small, "untolerated")), "TaintToleration event",
             timeout=60)
        pod = small.pod("untolerated")
        if pod is not None and (pod.get("status") or {}).get("phase") == "Failed":
            assert pod["status"]["reason"] == "TaintToleration"
            assert pod["status"]["message"] == f"Pod was rejected: {message}"
        assert not _state(pod)  # no container was ever made
        small.create_pod("tolerant", SLEEP, tolerations=[
            {"key": taint, "operator": "Equal", "value": "db", "effect": "NoExecute"}])
        wait(lambda: _phase(small, "tolerant") == "Running", "tolerant Running", timeout=60)
    finally:
        small.cluster.kubectl("taint", "node", small.name, f"{taint}-", check=False)
        _delete(small, "untolerated", "tolerant")
