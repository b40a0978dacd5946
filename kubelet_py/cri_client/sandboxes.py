"""Pod sandbox RPCs."""
from __future__ import annotations

from cri.api import runtime_pb2 as pb
from kubelet_py.cri_client.connection import Connection


class Sandboxes:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    async def run(self, config: pb.PodSandboxConfig, *, runtime_handler: str = "") -> str:
        resp: pb.RunPodSandboxResponse = await self._c.call(
            "RunPodSandbox", self._c.runtime.RunPodSandbox,
            pb.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler),
            timeout=max(self._c.timeout, 240.0))
        return resp.pod_sandbox_id

    async def stop(self, sandbox_id: str) -> None:
        await self._c.call("StopPodSandbox", self._c.runtime.StopPodSandbox,
                           pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))

    async def remove(self, sandbox_id: str) -> None:
        await self._c.call("RemovePodSandbox", self._c.runtime.RemovePodSandbox,
                           pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))

    async def status(self, sandbox_id: str) -> pb.PodSandboxStatus:
        resp: pb.PodSandboxStatusResponse = await self._c.call(
            "PodSandboxStatus", self._c.runtime.PodSandboxStatus,
            pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id))
        return resp.status

    async def list(self, *, labels: dict[str, str] | None = None) -> list[pb.PodSandbox]:
        request = pb.ListPodSandboxRequest(
            filter=pb.PodSandboxFilter(label_selector=labels or {}))
        resp: pb.ListPodSandboxResponse = await self._c.call(
            "ListPodSandbox", self._c.runtime.ListPodSandbox, request)
        return list(resp.items)
