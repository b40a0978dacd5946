"""StatsPort over the engine's Runtime: cgroup CPU and memory, writable-layer usage."""
from __future__ import annotations

from collections.abc import Sequence

from cri.api import runtime_pb2 as pb
from cri.server.ports import ContainerStatsEntry
from engine.cgroups.base import CgroupStats
from engine.errors import EngineError
from engine.runtime.api import ContainerInfo, Runtime
from engine.runtime.status import Status


def _u64(value: int) -> pb.UInt64Value:
    return pb.UInt64Value(value=max(value, 0))


def cpu_memory(stats: CgroupStats, now: int) -> tuple[pb.CpuUsage, pb.MemoryUsage]:
    return (pb.CpuUsage(timestamp=now, usage_core_nano_seconds=_u64(stats.cpu_usage_ns)),
            pb.MemoryUsage(timestamp=now, working_set_bytes=_u64(stats.memory_working_set),
                           usage_bytes=_u64(stats.memory_usage),
                           rss_bytes=_u64(stats.memory_rss)))


class EngineStats:
    def __init__(self, runtime: Runtime, *, image_fs_mountpoint: str) -> None:
        self._rt = runtime
        self._mountpoint = image_fs_mountpoint

    def _container(self, info: ContainerInfo) -> pb.ContainerStats:
        rec, c = info.record, info.record.config
        stats = self._rt.container_stats(rec.id)
        cpu, memory = cpu_memory(stats.cgroup, stats.timestamp)
        return pb.ContainerStats(
            attributes=pb.ContainerAttributes(
                id=rec.id, metadata=pb.ContainerMetadata(name=c.name, attempt=c.attempt),
                labels=c.labels, annotations=c.annotations),
            cpu=cpu, memory=memory,
            writable_layer=pb.FilesystemUsage(
                timestamp=stats.timestamp,
                fs_id=pb.FilesystemIdentifier(mountpoint=self._mountpoint),
                used_bytes=_u64(stats.writable_layer_bytes),
                inodes_used=_u64(stats.writable_layer_inodes)))

    def container_stats(self, container_id: str) -> pb.ContainerStats:
        return self._container(self._rt.container_status(container_id))

    def _running(self, sandbox_id: str | None = None) -> list[ContainerInfo]:
        return [i for i in self._rt.list_containers(sandbox_id)
                if i.state.status is Status.RUNNING]

    def list_container_stats(self) -> Sequence[ContainerStatsEntry]:
        out = []
        for info in self._running():
            try:
                out.append(ContainerStatsEntry(info.record.sandbox_id, self._container(info)))
            except EngineError:
                continue  # exited or removed while listing
        return out

    def sandbox_stats(self, sandbox_id: str) -> pb.PodSandboxStats:
        info = self._rt.sandbox_status(sandbox_id)
        rec, c = info.record, info.record.config
        now = self._rt.ctx.clock()
        cpu, memory = cpu_memory(self._rt.sandbox_stats(rec.id), now)
        containers = []
        for ci in self._running(rec.id):
            try:
                containers.append(self._container(ci))
            except EngineError:
                continue
        return pb.PodSandboxStats(
            attributes=pb.PodSandboxAttributes(
                id=rec.id, metadata=pb.PodSandboxMetadata(name=c.name, namespace=c.namespace,
                                                          uid=c.uid, attempt=c.attempt),
                labels=c.labels, annotations=c.annotations),
            linux=pb.LinuxPodSandboxStats(cpu=cpu, memory=memory, containers=containers))

    def list_sandbox_stats(self) -> Sequence[pb.PodSandboxStats]:
        out = []
        for info in self._rt.list_sandboxes():
            try:
                out.append(self.sandbox_stats(info.record.id))
            except EngineError:
                continue
        return out
