"""The interface between sandboxes and pod networking."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True)
class PortMapping:
    protocol: str  # "tcp" | "udp" | "sctp"
    container_port: int
    host_port: int
    host_ip: str = ""


@dataclasses.dataclass(frozen=True)
class PodNetworkRequest:
    sandbox_id: str
    netns_path: str
    pod_name: str
    pod_namespace: str
    pod_uid: str
    ifname: str = "eth0"
    port_mappings: tuple[PortMapping, ...] = ()
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PodNetworkResult:
    ips: tuple[str, ...]  # the pod's addresses, IPv4 first, without prefix length
    result: Mapping[str, Any]  # the final CNI result, as JSON


class NetworkDriver(Protocol):
    def ready(self) -> tuple[bool, str]:
        """(True, "") when pods can get a network, else (False, reason)."""
        ...

    def set_pod_cidr(self, cidr: str) -> None:
        """The node's pod CIDR (from UpdateRuntimeConfig), used for the IPAM subnet."""
        ...

    def setup(self, request: PodNetworkRequest) -> PodNetworkResult:
        ...

    def check(self, request: PodNetworkRequest) -> None:
        ...

    def teardown(self, request: PodNetworkRequest) -> None:
        """Idempotent: succeeds when the netns or the attachment is already gone."""
        ...
