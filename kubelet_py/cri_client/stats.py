"""Stats RPCs: per-sandbox and per-container resource usage, and image filesystems."""
from __future__ import annotations

from cri.api import runtime_pb2 as pb
from kubelet_py.cri_client.connection import Connection


class Stats:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    async def sandboxes(self) -> list[pb.PodSandboxStats]:
        resp: pb.ListPodSandboxStatsResponse = await self._c.call(
            "ListPodSandboxStats", self._c.runtime.ListPodSandboxStats,
            pb.ListPodSandboxStatsRequest(filter=pb.PodSandboxStatsFilter()))
        return list(resp.stats)

    async def containers(self) -> list[pb.ContainerStats]:
        resp: pb.ListContainerStatsResponse = await self._c.call(
            "ListContainerStats", self._c.runtime.ListContainerStats,
            pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter()))
        return list(resp.stats)

    async def image_fs(self) -> list[pb.FilesystemUsage]:
        resp: pb.ImageFsInfoResponse = await self._c.call(
            "ImageFsInfo", self._c.image.ImageFsInfo, pb.ImageFsInfoRequest())
        return list(resp.image_filesystems)
