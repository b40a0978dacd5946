"""The node's own loops composed: gather facts, register, keep status and Lease current."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any, Protocol

from kubelet_py import __version__
from kubelet_py.client.errors import ApiError, ApiUnavailable
from kubelet_py.client.rest import RestClient
from kubelet_py.clock import Clock
from kubelet_py.errors import RuntimeUnavailable
from kubelet_py.node.lease import LeaseController
from kubelet_py.node.machine import MachineInfo, collect_usage
from kubelet_py.node.setters import NodeFacts, RuntimeCondition, RuntimeState
from kubelet_py.node.status import Frequencies, NodeStatusController

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.37.1"
"""The Kubernetes API level this kubelet implements (reported as kubeletVersion)."""


class RuntimeProbe(Protocol):
    async def state(self) -> RuntimeState: ...

    async def update_pod_cidr(self, cidr: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    node_name: str
    node_ip: str | None
    port: int
    max_pods: int
    labels: dict[str, str]
    state_dir: Path
    register: bool = True
    """False (--register-node=false): the Node is made by someone else; wait for it."""


def runtime_down(reason: str) -> RuntimeState:
    down = RuntimeCondition(ready=False, reason="RuntimeUnreachable", message=reason)
    return RuntimeState(name=None, version=None, runtime=down, network=down)


class NodeAgent:
    def __init__(self, client: RestClient, *, config: NodeConfig, machine: MachineInfo,
                 runtime: RuntimeProbe, clock: Clock,
                 frequencies: Frequencies | None = None) -> None:
        self._config = config
        self._machine = machine
        self._runtime = runtime
        self._clock = clock
        self.lease = LeaseController(client, config.node_name, clock=clock)
        self.status = NodeStatusController(
            client, facts=self.facts, labels=config.labels, clock=clock,
            pod_cidr_sink=runtime, frequencies=frequencies or Frequencies(),
            on_registered=self._registered)
        self.registered = asyncio.Event()

    def _registered(self, node: dict[str, Any]) -> None:
        self.lease.set_node_uid(node["metadata"]["uid"])
        self.registered.set()

    async def facts(self) -> NodeFacts:
        try:
            runtime = await self._runtime.state()
        except RuntimeUnavailable as exc:
            runtime = runtime_down(str(exc))
        return NodeFacts(
            node_name=self._config.node_name, node_ip=self._config.node_ip,
            kubelet_version=f"{KUBELET_VERSION}+kubelet-py.{__version__}",
            kubelet_port=self._config.port, max_pods=self._config.max_pods,
            machine=self._machine, usage=collect_usage(state_dir=self._config.state_dir),
            runtime=runtime)

    async def register(self) -> None:
        delay = 0.2
        while True:
            try:
                if self._config.register:
                    await self.status.register()
                else:
                    await self.status.adopt()
                return
            except (ApiError, ApiUnavailable) as exc:
                log.warning("registering node %s failed: %s; retrying in %.1fs",
                            self._config.node_name, exc, delay)
                await self._clock.sleep(delay)
                delay = min(7.0, delay * 2)

    async def run(self) -> None:
        """Register (fatal on 403), then run the lease and status loops forever."""
        await self.register()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.lease.run(), name="node-lease")
            tg.create_task(self.status.run(), name="node-status")
