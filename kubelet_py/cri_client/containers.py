"""Container RPCs."""
from __future__ import annotations

from collections.abc import Sequence

from cri.api import runtime_pb2 as pb
from kubelet_py.cri_client.connection import Connection


class Containers:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    async def create(self, sandbox_id: str, config: pb.ContainerConfig,
                     sandbox_config: pb.PodSandboxConfig) -> str:
        resp: pb.CreateContainerResponse = await self._c.call(
            "CreateContainer", self._c.runtime.CreateContainer,
            pb.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config,
                                      sandbox_config=sandbox_config))
        return resp.container_id

    async def start(self, container_id: str) -> None:
        await self._c.call("StartContainer", self._c.runtime.StartContainer,
                           pb.StartContainerRequest(container_id=container_id))

    async def stop(self, container_id: str, *, timeout: int) -> None:
        """SIGTERM (or the image's stop signal), SIGKILL after `timeout` seconds."""
        await self._c.call("StopContainer", self._c.runtime.StopContainer,
                           pb.StopContainerRequest(container_id=container_id, timeout=timeout),
                           timeout=self._c.timeout + timeout)

    async def remove(self, container_id: str) -> None:
        await self._c.call("RemoveContainer", self._c.runtime.RemoveContainer,
                           pb.RemoveContainerRequest(container_id=container_id))

    async def list(self, *, sandbox_id: str = "",
                   labels: dict[str, str] | None = None) -> list[pb.Container]:
        request = pb.ListContainersRequest(filter=pb.ContainerFilter(
            pod_sandbox_id=sandbox_id, label_selector=labels or {}))
        resp: pb.ListContainersResponse = await self._c.call(
            "ListContainers", self._c.runtime.ListContainers, request)
        return list(resp.containers)

    async def status(self, container_id: str) -> pb.ContainerStatus:
        resp: pb.ContainerStatusResponse = await self._c.call(
            "ContainerStatus", self._c.runtime.ContainerStatus,
            pb.ContainerStatusRequest(container_id=container_id))
        return resp.status

    async def reopen_log(self, container_id: str) -> None:
        """Make the runtime reopen the container's log file (after the kubelet renamed it)."""
        await self._c.call("ReopenContainerLog", self._c.runtime.ReopenContainerLog,
                           pb.ReopenContainerLogRequest(container_id=container_id))

    async def exec_sync(self, container_id: str, cmd: Sequence[str], *,
                        timeout: int) -> pb.ExecSyncResponse:
        """Run a command in the container and wait (probes); `timeout` in seconds."""
        resp: pb.ExecSyncResponse = await self._c.call(
            "ExecSync", self._c.runtime.ExecSync,
            pb.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout),
            timeout=timeout + 10.0)
        return resp
