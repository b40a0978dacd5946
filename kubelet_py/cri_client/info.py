"""Version, Status and UpdateRuntimeConfig: what the node reports about its runtime."""
from __future__ import annotations

from cri.api import runtime_pb2 as pb
from kubelet_py.cri_client.connection import Connection
from kubelet_py.node.setters import RuntimeCondition, RuntimeHandler, RuntimeState

CRI_VERSION = "v1"
PROBE_TIMEOUT = 10.0


class RuntimeInfo:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    async def version(self, *, timeout: float | None = None) -> pb.VersionResponse:
        return await self._c.call("Version", self._c.runtime.Version,
                                  pb.VersionRequest(version=CRI_VERSION), timeout=timeout)

    async def status(self, *, timeout: float | None = None) -> pb.StatusResponse:
        return await self._c.call("Status", self._c.runtime.Status, pb.StatusRequest(),
                                  timeout=timeout)

    async def update_pod_cidr(self, cidr: str) -> None:
        request = pb.UpdateRuntimeConfigRequest(
            runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=cidr)))
        await self._c.call("UpdateRuntimeConfig", self._c.runtime.UpdateRuntimeConfig, request)

    async def state(self) -> RuntimeState:
        """Version and Status folded into what the Node's Ready condition and
        runtimeHandlers need."""
        version = await self.version(timeout=PROBE_TIMEOUT)
        status = await self.status(timeout=PROBE_TIMEOUT)
        conditions = {c.type: c for c in status.status.conditions}

        def cond(kind: str) -> RuntimeCondition:
            c = conditions.get(kind)
            if c is None:
                return RuntimeCondition(ready=False, reason="ConditionMissing",
                                        message=f"runtime did not report {kind}")
            return RuntimeCondition(ready=c.status, reason=c.reason, message=c.message)

        handlers = tuple(
            RuntimeHandler(name=h.name,
                           recursive_read_only_mounts=h.features.recursive_read_only_mounts,
                           user_namespaces=h.features.user_namespaces)
            for h in status.runtime_handlers)
        return RuntimeState(name=version.runtime_name, version=version.runtime_version,
                            runtime=cond("RuntimeReady"), network=cond("NetworkReady"),
                            handlers=handlers)

