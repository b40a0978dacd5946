from __future__ import annotations

import dataclasses
import datetime as dt

from kubelet_py.node.machine import MachineInfo, Usage
from kubelet_py.node.setters import (
    NodeFacts,
    RuntimeCondition,
    RuntimeHandler,
    RuntimeState,
    binary_quantity,
    build_status,
    initial_node,
    without_heartbeats,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
GiB = 1024**3
MACHINE = MachineInfo(hostname="node-a", kernel_version="6.1.0", os_image="Debian GNU/Linux 12",
                      architecture="amd64", boot_id="b-1", machine_id="m-1", system_uuid="u-1",
                      cpus=4, memory_bytes=8 * GiB, ephemeral_storage_bytes=100 * GiB)
USAGE = Usage(memory_available_bytes=4 * GiB, fs_available_bytes=50 * GiB,
              fs_capacity_bytes=100 * GiB, pids_in_use=300, pid_max=4194304)
OK = RuntimeCondition(ready=True)
RUNTIME = RuntimeState(name="containerd", version="v2.2.9", runtime=OK, network=OK)
FACTS = NodeFacts(node_name="node-a", node_ip="10.0.0.5", kubelet_version="v1.37.1",
                  kubelet_port=10250, max_pods=110, machine=MACHINE, usage=USAGE,
                  runtime=RUNTIME)


def conditions(node: dict[str, object]) -> dict[str, dict[str, str]]:
    status = node["status"]
    assert isinstance(status, dict)
    return {c["type"]: c for c in status["conditions"]}


def test_registration_object() -> None:
    node = initial_node(FACTS, labels={"role": "worker"})
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "node-a"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] == "amd64"
    assert labels["role"] == "worker"
    assert "node.kubernetes.io/instance-type" not in labels


def test_full_status() -> None:
    node = build_status(initial_node(FACTS, labels={}), FACTS, T0)
    status = node["status"]
    assert status["addresses"] == [{"type": "InternalIP", "address": "10.0.0.5"},
                                   {"type": "Hostname", "address": "node-a"}]
    assert status["capacity"] == {"cpu": "4", "memory": "8Gi", "pods": "110",
                                  "ephemeral-storage": "100Gi"}
    assert status["allocatable"]["memory"] == "8092Mi"  # minus the 100Mi hard eviction
    assert status["allocatable"]["ephemeral-storage"] == binary_quantity(int(90 * GiB))
    info = status["nodeInfo"]
    assert info["containerRuntimeVersion"] == "containerd://v2.2.9"
    assert info["kubeletVersion"] == "v1.37.1"
    assert (info["bootID"], info["machineID"], info["architecture"]) == ("b-1", "m-1", "amd64")
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    conds = conditions(node)
    assert conds["Ready"]["status"] == "True"
    assert conds["Ready"]["reason"] == "KubeletReady"
    assert conds["MemoryPressure"]["reason"] == "KubeletHasSufficientMemory"
    assert conds["DiskPressure"]["reason"] == "KubeletHasNoDiskPressure"
    assert conds["PIDPressure"]["reason"] == "KubeletHasSufficientPID"


def test_not_ready_while_network_not_ready() -> None:
    net = RuntimeCondition(ready=False, reason="NetworkPluginNotReady",
                           message="cni config uninitialized")
    facts = dataclasses.replace(FACTS, runtime=dataclasses.replace(RUNTIME, network=net))
    ready = conditions(build_status({}, facts, T0))["Ready"]
    assert ready["status"] == "False"
    assert ready["reason"] == "KubeletNotReady"
    assert "NetworkReady=false reason:NetworkPluginNotReady" in ready["message"]
    assert "cni config uninitialized" in ready["message"]


def test_runtime_down_is_not_ready() -> None:
    down = RuntimeCondition(ready=False, reason="RuntimeUnreachable", message="refused")
    facts = dataclasses.replace(FACTS, runtime=RuntimeState(None, None, down, down))
    node = build_status({}, facts, T0)
    assert conditions(node)["Ready"]["message"].startswith("container runtime is down")
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == ""


def test_pressure_conditions() -> None:
    usage = Usage(memory_available_bytes=50 * 1024 * 1024, fs_available_bytes=5 * GiB,
                  fs_capacity_bytes=100 * GiB, pids_in_use=99_000, pid_max=100_000)
    conds = conditions(build_status({}, dataclasses.replace(FACTS, usage=usage), T0))
    assert (conds["MemoryPressure"]["status"], conds["MemoryPressure"]["reason"]) == (
        "True", "KubeletHasInsufficientMemory")
    assert (conds["DiskPressure"]["status"], conds["DiskPressure"]["reason"]) == (
        "True", "KubeletHasDiskPressure")
    assert (conds["PIDPressure"]["status"], conds["PIDPressure"]["reason"]) == (
        "True", "KubeletHasInsufficientPID")


def test_transition_time_moves_only_on_flip() -> None:
    first = build_status({}, FACTS, T0)
    later = T0 + dt.timedelta(minutes=1)
    same = build_status(first, FACTS, later)
    ready = conditions(same)["Ready"]
    assert ready["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert ready["lastHeartbeatTime"] == "2026-01-01T00:01:00Z"
    assert without_heartbeats(same["status"]) == without_heartbeats(first["status"])
    down = RuntimeCondition(ready=False, reason="x", message="y")
    flipped = build_status(same, dataclasses.replace(
        FACTS, runtime=dataclasses.replace(RUNTIME, runtime=down)), later)
    assert conditions(flipped)["Ready"]["lastTransitionTime"] == "2026-01-01T00:01:00Z"
    assert without_heartbeats(flipped["status"]) != without_heartbeats(first["status"])


def test_no_node_ip_only_hostname() -> None:
    node = build_status({}, dataclasses.replace(FACTS, node_ip=None), T0)
    assert node["status"]["addresses"] == [{"type": "Hostname", "address": "node-a"}]


def test_binary_quantity_is_canonical() -> None:
    assert binary_quantity(1024) == "1Ki"
    assert binary_quantity(1536 * 1024) == "1536Ki"
    assert binary_quantity(2 * 1024 * 1024) == "2Mi"
    assert binary_quantity(1000) == "1000"
    assert binary_quantity(0) == "0"


HANDLERS = (RuntimeHandler(name="", recursive_read_only_mounts=True, user_namespaces=True),
            RuntimeHandler(name="runc", recursive_read_only_mounts=True,
                           user_namespaces=False))


def with_handlers(handlers: tuple[RuntimeHandler, ...] | None) -> NodeFacts:
    return dataclasses.replace(FACTS, runtime=dataclasses.replace(RUNTIME, handlers=handlers))


def test_runtime_handlers_copied_with_their_features() -> None:
    status = build_status({}, with_handlers(HANDLERS), T0)["status"]
    assert status["runtimeHandlers"] == [
        {"name": "", "features": {"recursiveReadOnlyMounts": True, "userNamespaces": True}},
        {"name": "runc", "features": {"recursiveReadOnlyMounts": True,
                                      "userNamespaces": False}}]


def test_runtime_handlers_unknown_keeps_last_none_reported_removes() -> None:
    reported = build_status({}, with_handlers(HANDLERS), T0)
    unreachable = build_status(reported, with_handlers(None), T0)
    assert unreachable["status"]["runtimeHandlers"] == reported["status"]["runtimeHandlers"]
    assert "runtimeHandlers" not in build_status(reported, with_handlers(()), T0)["status"]
    assert "runtimeHandlers" not in build_status({}, FACTS, T0)["status"]
