"""Container and pod sandbox stats: single, listed with filters, and streamed."""
from __future__ import annotations

from collections.abc import Iterator

import grpc

from cri.api import runtime_pb2 as pb
from cri.server import validate as v
from cri.server.dispatch import Impl
from cri.server.ports import ContainerStatsEntry, StatsPort


def container_matches(item: ContainerStatsEntry, flt: pb.ContainerStatsFilter) -> bool:
    attrs = item.stats.attributes
    if not v.id_matches(attrs.id, flt.id):
        return False
    if not v.id_matches(item.pod_sandbox_id, flt.pod_sandbox_id):
        return False
    return v.labels_match(attrs.labels, flt.label_selector)


def sandbox_matches(item: pb.PodSandboxStats, flt: pb.PodSandboxStatsFilter) -> bool:
    attrs = item.attributes
    return v.id_matches(attrs.id, flt.id) and v.labels_match(attrs.labels, flt.label_selector)


class Stats:
    def __init__(self, port: StatsPort) -> None:
        self._port = port

    def rpcs(self) -> dict[str, Impl]:
        return {"ContainerStats": self.ContainerStats,
                "ListContainerStats": self.ListContainerStats,
                "StreamContainerStats": self.StreamContainerStats,
                "PodSandboxStats": self.PodSandboxStats,
                "ListPodSandboxStats": self.ListPodSandboxStats,
                "StreamPodSandboxStats": self.StreamPodSandboxStats}

    def ContainerStats(self, request: pb.ContainerStatsRequest,
                       context: grpc.ServicerContext) -> pb.ContainerStatsResponse:
        return pb.ContainerStatsResponse(stats=self._port.container_stats(
            v.require(request.container_id, "container_id")))

    def _containers(self, flt: pb.ContainerStatsFilter) -> list[pb.ContainerStats]:
        return [e.stats for e in self._port.list_container_stats() if container_matches(e, flt)]

    def ListContainerStats(self, request: pb.ListContainerStatsRequest,
                           context: grpc.ServicerContext) -> pb.ListContainerStatsResponse:
        return pb.ListContainerStatsResponse(stats=self._containers(request.filter))

    def StreamContainerStats(self, request: pb.StreamContainerStatsRequest,
                             context: grpc.ServicerContext
                             ) -> Iterator[pb.StreamContainerStatsResponse]:
        for batch in v.batches(self._containers(request.filter)):
            yield pb.StreamContainerStatsResponse(container_stats=batch)

    def PodSandboxStats(self, request: pb.PodSandboxStatsRequest,
                        context: grpc.ServicerContext) -> pb.PodSandboxStatsResponse:
        return pb.PodSandboxStatsResponse(stats=self._port.sandbox_stats(
            v.require(request.pod_sandbox_id, "pod_sandbox_id")))

    def _sandboxes(self, flt: pb.PodSandboxStatsFilter) -> list[pb.PodSandboxStats]:
        return [s for s in self._port.list_sandbox_stats() if sandbox_matches(s, flt)]

    def ListPodSandboxStats(self, request: pb.ListPodSandboxStatsRequest,
                            context: grpc.ServicerContext) -> pb.ListPodSandboxStatsResponse:
        return pb.ListPodSandboxStatsResponse(stats=self._sandboxes(request.filter))

    def StreamPodSandboxStats(self, request: pb.StreamPodSandboxStatsRequest,
                              context: grpc.ServicerContext
                              ) -> Iterator[pb.StreamPodSandboxStatsResponse]:
        for batch in v.batches(self._sandboxes(request.filter)):
            yield pb.StreamPodSandboxStatsResponse(pod_sandbox_stats=batch)
