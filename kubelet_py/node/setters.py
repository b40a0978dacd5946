"""Node status built from small setter functions, each owning a few fields (pure)."""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from kubelet_py.clock import rfc3339
from kubelet_py.node.allocatable import (
    MEMORY_EVICTION_HARD,
    NODEFS_EVICTION_HARD,
    node_allocatable,
)
from kubelet_py.node.machine import MachineInfo, Usage

Obj = dict[str, Any]

PID_EVICTION_HARD = 0.05
"""pid.available below 5% of pid_max."""


@dataclasses.dataclass(frozen=True)
class RuntimeCondition:
    ready: bool
    reason: str = ""
    message: str = ""


@dataclasses.dataclass(frozen=True)
class RuntimeHandler:
    """One entry of the CRI Status' `runtime_handlers`: a handler and what it supports."""

    name: str
    """Empty for the runtime's default handler."""
    recursive_read_only_mounts: bool = False
    user_namespaces: bool = False


@dataclasses.dataclass(frozen=True)
class RuntimeState:
    """What the CRI's Version and Status calls report (None fields: runtime unreachable)."""

    name: str | None
    version: str | None
    runtime: RuntimeCondition
    network: RuntimeCondition
    handlers: tuple[RuntimeHandler, ...] | None = None
    """The runtime's handlers; None when unknown (Status failed): the last ones stay."""


@dataclasses.dataclass(frozen=True)
class NodeFacts:
    node_name: str
    node_ip: str | None
    kubelet_version: str
    kubelet_port: int
    max_pods: int
    machine: MachineInfo
    usage: Usage
    runtime: RuntimeState


Setter = Callable[[Obj, NodeFacts, dt.datetime], None]


def set_condition(node: Obj, *, kind: str, status: bool, reason: str, message: str,
                  now: dt.datetime) -> None:
    """Upsert one condition; lastTransitionTime moves only when the status flips."""
    conditions: list[Obj] = node.setdefault("status", {}).setdefault("conditions", [])
    text = "True" if status else "False"
    for cond in conditions:
        if cond.get("type") == kind:
            if cond.get("status") != text:
                cond["lastTransitionTime"] = rfc3339(now)
            cond.update(status=text, reason=reason, message=message,
                        lastHeartbeatTime=rfc3339(now))
            return
    conditions.append({"type": kind, "status": text, "reason": reason, "message": message,
                       "lastHeartbeatTime": rfc3339(now), "lastTransitionTime": rfc3339(now)})


def set_addresses(node: Obj, facts: NodeFacts, now: dt.datetime) -> None:
    addresses = [{"type": "InternalIP", "address": facts.node_ip}] if facts.node_ip else []
    addresses.append({"type": "Hostname", "address": facts.machine.hostname})
    node.setdefault("status", {})["addresses"] = addresses


def binary_quantity(n: int) -> str:
    """Bytes as the API server's canonical binary-SI form (so round trips compare equal)."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = 1024 ** ("KMGTPE".index(suffix[0]) + 1)
        if n and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def _ki(n: int) -> str:
    return binary_quantity(n // 1024 * 1024)


def set_capacity(node: Obj, facts: NodeFacts, now: dt.datetime) -> None:
    m = facts.machine
    status = node.setdefault("status", {})
    status["capacity"] = {
        "cpu": str(m.cpus), "memory": _ki(m.memory_bytes), "pods": str(facts.max_pods),
        "ephemeral-storage": _ki(m.ephemeral_storage_bytes)}
    alloc = node_allocatable(m, max_pods=facts.max_pods)
    status["allocatable"] = {
        "cpu": str(m.cpus), "memory": binary_quantity(alloc.memory_bytes),
        "pods": str(alloc.pods),
        "ephemeral-storage": binary_quantity(alloc.ephemeral_storage_bytes)}


def set_node_info(node: Obj, facts: NodeFacts, now: dt.datetime) -> None:
    m, rt = facts.machine, facts.runtime
    runtime = f"{rt.name}://{rt.version}" if rt.name and rt.version else ""
    node.setdefault("status", {})["nodeInfo"] = {
        "machineID": m.machine_id, "systemUUID": m.system_uuid, "bootID": m.boot_id,
        "kernelVersion": m.kernel_version, "osImage": m.os_image,
        "containerRuntimeVersion": runtime, "kubeletVersion": facts.kubelet_version,
        "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": m.architecture}


def set_daemon_endpoints(node: Obj, facts: NodeFacts, now: dt.datetime) -> None:
    node.setdefault("status", {})["daemonEndpoints"] = {
        "kubeletEndpoint": {"Port": facts.kubelet_port}}


def set_memory_pressure(node: Obj, facts: NodeFacts, now: dt.datetime) -> None:
    low = facts.usage.memory_available_bytes < MEMORY_EVICTION_HARD
    set_condition(node, kind="MemoryPressure", status=low, now=now,
                  reason="KubeletHasInsufficientMemory" if low else "KubeletHasSufficientMemory",
                  message="kubelet has insufficient memory available" if low
                  else "kubelet has sufficient memory available")


def set_disk_pressure(node: Obj, facts: NodeFacts, now: dt.datetime) -> None:
    u = facts.usage
    low = u.fs_capacity_bytes > 0 and \
        u.fs_available_bytes < u.fs_capacity_bytes * NODEFS_EVICTION_HARD
    set_condition(node, kind="DiskPressure", status=low, now=now,
                  reason="KubeletHasDiskPressure" if low else "KubeletHasNoDiskPressure",
                  message="kubelet has disk pressure" if low else "kubelet has no disk pressure")


def set_pid_pressure(node: Obj, facts: NodeFacts, now: dt.datetime) -> None:
    u = facts.usage
    low = u.pid_max - u.pids_in_use < u.pid_max * PID_EVICTION_HARD
    set_condition(node, kind="PIDPressure", status=low, now=now,
                  reason="KubeletHasInsufficientPID" if low else "KubeletHasSufficientPID",
                  message="kubelet has insufficient PID available" if low
                  else "kubelet has sufficient PID available")


def not_ready_reasons(facts: NodeFacts) -> list[str]:
    rt = facts.runtime
    problems = []
    if rt.name is None:
        problems.append("container runtime is down")
    if not rt.runtime.ready:
        problems.append(f"container runtime status check may not have completed yet: "
                        f"RuntimeReady=false reason:{rt.runtime.reason} "
                        f"message:{rt.runtime.message}")
    if not rt.network.ready:
        problems.append(f"container runtime network not ready: NetworkReady=false "
                        f"reason:{rt.network.reason} message:{rt.network.message}")
    return problems


def set_ready(node: Obj, facts: NodeFacts, now: dt.datetime) -> None:
    problems = not_ready_reasons(facts)
    set_condition(node, kind="Ready", status=not problems, now=now,
                  reason="KubeletNotReady" if problems else "KubeletReady",
                  message=", ".join(problems) if problems
                  else "kubelet is posting ready status")


def set_runtime_handlers(node: Obj, facts: NodeFacts, now: dt.datetime) -> None:
    """`status.runtimeHandlers` from the CRI Status; none reported removes the field (the
    API server omits an empty list), unknown (runtime unreachable) keeps what is there."""
    handlers = facts.runtime.handlers
    if handlers is None:
        return
    status = node.setdefault("status", {})
    if not handlers:
        status.pop("runtimeHandlers", None)
        return
    status["runtimeHandlers"] = [
        {"name": h.name, "features": {"recursiveReadOnlyMounts": h.recursive_read_only_mounts,
                                      "userNamespaces": h.user_namespaces}}
        for h in handlers]


DEFAULT_SETTERS: tuple[Setter, ...] = (
    set_addresses, set_capacity, set_node_info, set_daemon_endpoints,
    set_memory_pressure, set_disk_pressure, set_pid_pressure, set_ready,
    set_runtime_handlers)


def build_status(node: Obj, facts: NodeFacts, now: dt.datetime,
                 setters: tuple[Setter, ...] = DEFAULT_SETTERS) -> Obj:
    """Apply the setters to a copy of `node`; returns the new node."""
    fresh = copy.deepcopy(node)
    for setter in setters:
        setter(fresh, facts, now)
    return fresh


def without_heartbeats(status: Obj) -> Obj:
    """The status with heartbeat times removed: what "changed" is judged on."""
    out = copy.deepcopy(status)
    for cond in out.get("conditions") or []:
        cond.pop("lastHeartbeatTime", None)
    return out


def node_labels(machine: MachineInfo, labels: dict[str, str]) -> dict[str, str]:
    """The labels the Node is registered with: the well-known ones, then --node-labels."""
    return {
        "kubernetes.io/hostname": machine.hostname,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": machine.architecture,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": machine.architecture,
        **labels,
    }


def initial_node(facts: NodeFacts, *, labels: dict[str, str]) -> Obj:
    """The Node object to register (status is filled by the setters)."""
    all_labels = node_labels(facts.machine, labels)
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": facts.node_name, "labels": all_labels,
                         "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach":
                                         "true"}},
            "spec": {}}
