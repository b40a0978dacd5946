"""ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics, from the stats.

A fixed set of descriptors (the CRI asks for it to be static), each value taken from the
same cgroup and writable-layer figures the Stats RPCs return. CRI metric values are
unsigned integers, so CPU time is in nanoseconds and says so in its name.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import grpc

from cri.api import runtime_pb2 as pb
from cri.server import validate as v
from cri.server.dispatch import Impl
from cri.server.ports import StatsPort

LABELS = ("namespace", "pod", "container")


@dataclasses.dataclass(frozen=True)
class _Metric:
    name: str
    help: str
    type: int
    value: Callable[[pb.CpuUsage, pb.MemoryUsage], pb.UInt64Value]


METRICS = (
    _Metric("container_cpu_usage_nanoseconds_total", "Cumulative CPU time consumed (ns).",
            pb.COUNTER, lambda cpu, mem: cpu.usage_core_nano_seconds),
    _Metric("container_memory_working_set_bytes", "Current working set (bytes).",
            pb.GAUGE, lambda cpu, mem: mem.working_set_bytes),
    _Metric("container_memory_usage_bytes", "Current memory usage, all of it (bytes).",
            pb.GAUGE, lambda cpu, mem: mem.usage_bytes),
    _Metric("container_memory_rss", "Anonymous and swap cache memory (bytes).",
            pb.GAUGE, lambda cpu, mem: mem.rss_bytes),
)


def descriptors() -> list[pb.MetricDescriptor]:
    return [pb.MetricDescriptor(name=m.name, help=m.help, label_keys=LABELS) for m in METRICS]


def _metrics(cpu: pb.CpuUsage, mem: pb.MemoryUsage,
             labels: tuple[str, str, str]) -> list[pb.Metric]:
    return [pb.Metric(name=m.name, metric_type=m.type,  # type: ignore[arg-type]
                      label_values=labels, value=m.value(cpu, mem)) for m in METRICS]


def sandbox_metrics(stats: pb.PodSandboxStats) -> pb.PodSandboxMetrics:
    meta, linux = stats.attributes.metadata, stats.linux
    return pb.PodSandboxMetrics(
        pod_sandbox_id=stats.attributes.id,
        metrics=_metrics(linux.cpu, linux.memory, (meta.namespace, meta.name, "")),
        container_metrics=[
            pb.ContainerMetrics(container_id=c.attributes.id, metrics=_metrics(
                c.cpu, c.memory, (meta.namespace, meta.name, c.attributes.metadata.name)))
            for c in linux.containers])


class Metrics:
    def __init__(self, port: StatsPort) -> None:
        self._port = port

    def rpcs(self) -> dict[str, Impl]:
        return {"ListMetricDescriptors": self.ListMetricDescriptors,
                "ListPodSandboxMetrics": self.ListPodSandboxMetrics,
                "StreamPodSandboxMetrics": self.StreamPodSandboxMetrics}

    def ListMetricDescriptors(self, request: pb.ListMetricDescriptorsRequest,
                              context: grpc.ServicerContext
                              ) -> pb.ListMetricDescriptorsResponse:
        return pb.ListMetricDescriptorsResponse(descriptors=descriptors())

    def _all(self) -> list[pb.PodSandboxMetrics]:
        return [sandbox_metrics(s) for s in self._port.list_sandbox_stats()]

    def ListPodSandboxMetrics(self, request: pb.ListPodSandboxMetricsRequest,
                              context: grpc.ServicerContext
                              ) -> pb.ListPodSandboxMetricsResponse:
        return pb.ListPodSandboxMetricsResponse(pod_metrics=self._all())

    def StreamPodSandboxMetrics(self, request: pb.StreamPodSandboxMetricsRequest,
                                context: grpc.ServicerContext
                                ) -> Iterator[pb.StreamPodSandboxMetricsResponse]:
        for batch in v.batches(self._all()):
            yield pb.StreamPodSandboxMetricsResponse(pod_sandbox_metrics=batch)
