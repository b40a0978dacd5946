"""`/stats/summary` (the stats/v1alpha1 Summary): the node from the host, pods and their
containers from the CRI's ListPodSandboxStats, the image filesystem from ImageFsInfo."""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any, Protocol

from cri.api import runtime_pb2 as pb
from kubelet_py.clock import Clock
from kubelet_py.errors import KubeletError
from kubelet_py.pods.model import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    Pod,
)
from kubelet_py.server.host_stats import FsSample, HostStats, filesystem

log = logging.getLogger(__name__)
Json = dict[str, Any]


class StatsRuntime(Protocol):
    async def sandboxes(self) -> list[pb.PodSandboxStats]: ...

    async def containers(self) -> list[pb.ContainerStats]: ...

    async def image_fs(self) -> list[pb.FilesystemUsage]: ...


class PodLookup(Protocol):
    def find(self, namespace: str, name: str) -> Pod | None: ...


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(nanos: int, fallback: dt.datetime) -> str:
    return rfc3339(dt.datetime.fromtimestamp(nanos / 1e9, dt.UTC) if nanos > 0 else fallback)


def _set(out: Json, key: str, holder: Any, field: str) -> None:
    """Copy a google.protobuf.UInt64Value field when the runtime set it."""
    if holder.HasField(field):
        out[key] = getattr(holder, field).value


def cpu(usage: pb.CpuUsage, now: dt.datetime) -> Json:
    out: Json = {"time": _stamp(usage.timestamp, now)}
    _set(out, "usageNanoCores", usage, "usage_nano_cores")
    _set(out, "usageCoreNanoSeconds", usage, "usage_core_nano_seconds")
    return out


def memory(usage: pb.MemoryUsage, now: dt.datetime) -> Json:
    out: Json = {"time": _stamp(usage.timestamp, now)}
    for key, field in (("availableBytes", "available_bytes"), ("usageBytes", "usage_bytes"),
                       ("workingSetBytes", "working_set_bytes"), ("rssBytes", "rss_bytes"),
                       ("pageFaults", "page_faults"),
                       ("majorPageFaults", "major_page_faults")):
        _set(out, key, usage, field)
    return out


def interface(usage: pb.NetworkInterfaceUsage) -> Json:
    out: Json = {"name": usage.name}
    for key, field in (("rxBytes", "rx_bytes"), ("rxErrors", "rx_errors"),
                       ("txBytes", "tx_bytes"), ("txErrors", "tx_errors")):
        _set(out, key, usage, field)
    return out


def network(usage: pb.NetworkUsage, now: dt.datetime) -> Json:
    out: Json = {"time": _stamp(usage.timestamp, now)}
    if usage.HasField("default_interface"):
        out.update(interface(usage.default_interface))
    out["interfaces"] = [interface(i) for i in usage.interfaces]
    return out


def fs_usage(usage: pb.FilesystemUsage, now: dt.datetime) -> Json:
    out: Json = {"time": _stamp(usage.timestamp, now)}
    _set(out, "usedBytes", usage, "used_bytes")
    _set(out, "inodesUsed", usage, "inodes_used")
    return out


def fs_sample(sample: FsSample, now: dt.datetime) -> Json:
    return {"time": rfc3339(now), "availableBytes": sample.available,
            "capacityBytes": sample.capacity, "usedBytes": sample.used,
            "inodesFree": sample.inodes_free, "inodes": sample.inodes,
            "inodesUsed": sample.inodes - sample.inodes_free}


def _container_start(pod: Pod | None, name: str, fallback: str) -> str:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == name:
            started = ((status.get("state") or {}).get("running") or {}).get("startedAt")
            if started:
                return str(started)
    return fallback


def pod_stats(s: pb.PodSandboxStats, pod: Pod | None, now: dt.datetime) -> Json:
    meta = s.attributes.metadata
    start = ((pod or {}).get("status") or {}).get("startTime") or rfc3339(now)
    out: Json = {"podRef": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
                 "startTime": start, "containers": []}
    linux = s.linux
    if linux.HasField("cpu"):
        out["cpu"] = cpu(linux.cpu, now)
    if linux.HasField("memory"):
        out["memory"] = memory(linux.memory, now)
    if linux.HasField("network"):
        out["network"] = network(linux.network, now)
    if linux.HasField("process") and linux.process.HasField("process_count"):
        out["process_stats"] = {"process_count": linux.process.process_count.value}
    for c in linux.containers:
        entry: Json = {"name": c.attributes.metadata.name,
                       "startTime": _container_start(pod, c.attributes.metadata.name, start)}
        if c.HasField("cpu"):
            entry["cpu"] = cpu(c.cpu, now)
        if c.HasField("memory"):
            entry["memory"] = memory(c.memory, now)
        if c.HasField("writable_layer"):
            entry["rootfs"] = fs_usage(c.writable_layer, now)
        out["containers"].append(entry)
    return out


class SummaryProvider:
    def __init__(self, *, node_name: str, runtime: StatsRuntime, pods: PodLookup,
                 host: HostStats, root_dir: Path, clock: Clock) -> None:
        self._node = node_name
        self._runtime = runtime
        self._pods = pods
        self._host = host
        self._root = root_dir
        self._clock = clock

    def node(self) -> Json:
        now = self._clock.now()
        stamp = rfc3339(now)
        used = self._host.cpu()
        mem = self._host.memory()
        procs = self._host.processes()
        node_cpu: Json = {"time": stamp, "usageCoreNanoSeconds": used.usage_core_nano_seconds}
        if used.usage_nano_cores is not None:
            node_cpu["usageNanoCores"] = used.usage_nano_cores
        return {
            "nodeName": self._node,
            "startTime": rfc3339(dt.datetime.fromtimestamp(self._host.boot_time(), dt.UTC)),
            "cpu": node_cpu,
            "memory": {"time": stamp, "availableBytes": mem.available,
                       "usageBytes": mem.total - mem.free,
                       "workingSetBytes": mem.total - mem.available,
                       "pageFaults": mem.page_faults,
                       "majorPageFaults": mem.major_page_faults},
            "fs": fs_sample(self._host_fs(), now),
            "rlimit": {"time": stamp, "maxpid": procs.max_pid, "curproc": procs.running},
        }

    def _host_fs(self) -> FsSample:
        return filesystem(self._root)

    async def summary(self) -> Json:
        """The whole Summary; a runtime error fails it (KubeletError), as upstream's 500."""
        now = self._clock.now()
        node = self.node()
        image_fs = await self._runtime.image_fs()
        if image_fs:
            node["runtime"] = {"imageFs": fs_usage(image_fs[0], now)}
        try:
            sandboxes = await self._runtime.sandboxes()
        except KubeletError as exc:
            # containerd answers ListPodSandboxStats only for sandboxes with a cgroup
            # parent; per-container stats always work: sum them per pod instead.
            log.debug("ListPodSandboxStats failed (%s): using ListContainerStats", exc)
            sandboxes = from_containers(await self._runtime.containers())
        newest: dict[str, pb.PodSandboxStats] = {}
        for s in sandboxes:
            meta = s.attributes.metadata
            seen = newest.get(meta.uid)
            if seen is None or seen.attributes.metadata.attempt < meta.attempt:
                newest[meta.uid] = s
        pods = [pod_stats(s, self._pods.find(s.attributes.metadata.namespace,
                                             s.attributes.metadata.name), now)
                for s in newest.values()]
        return {"node": node, "pods": pods}


def _sum(values: list[pb.UInt64Value | None]) -> pb.UInt64Value | None:
    if not values or any(v is None for v in values):
        return None
    return pb.UInt64Value(value=sum(v.value for v in values if v is not None))


def _field(holder: Any, name: str) -> pb.UInt64Value | None:
    return getattr(holder, name) if holder.HasField(name) else None


def from_containers(stats: list[pb.ContainerStats]) -> list[pb.PodSandboxStats]:
    """Pod stats made from container stats (labels name the pod): the newest attempt of
    each container, CPU and memory summed over them."""
    pods: dict[str, dict[str, pb.ContainerStats]] = {}
    for c in stats:
        labels = c.attributes.labels
        uid, name = labels.get(LABEL_POD_UID), labels.get(LABEL_CONTAINER_NAME)
        if not uid or not name:
            continue  # not made by a kubelet
        mine = pods.setdefault(uid, {})
        if name not in mine or mine[name].attributes.metadata.attempt < \
                c.attributes.metadata.attempt:
            mine[name] = c
    out = []
    for uid, by_name in pods.items():
        cs = list(by_name.values())
        labels = cs[0].attributes.labels
        sandbox = pb.PodSandboxStats(attributes=pb.PodSandboxAttributes(
            metadata=pb.PodSandboxMetadata(name=labels[LABEL_POD_NAME],
                                           namespace=labels.get(LABEL_POD_NAMESPACE, ""),
                                           uid=uid)))
        linux = sandbox.linux
        linux.containers.extend(cs)
        stamp = max((c.cpu.timestamp for c in cs), default=0)
        cores = _sum([_field(c.cpu, "usage_nano_cores") for c in cs])
        total = _sum([_field(c.cpu, "usage_core_nano_seconds") for c in cs])
        if cores is not None or total is not None:
            linux.cpu.timestamp = stamp
            if cores is not None:
                linux.cpu.usage_nano_cores.CopyFrom(cores)
            if total is not None:
                linux.cpu.usage_core_nano_seconds.CopyFrom(total)
        for field in ("working_set_bytes", "usage_bytes", "rss_bytes"):
            value = _sum([_field(c.memory, field) for c in cs])
            if value is not None:
                linux.memory.timestamp = max(c.memory.timestamp for c in cs)
                getattr(linux.memory, field).CopyFrom(value)
        out.append(sandbox)
    return out
