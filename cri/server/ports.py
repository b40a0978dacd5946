"""What the CRI servicers need from the engine, as small Protocols.

The servicers speak only to these ports, so they are tested with fakes and later wired to
the engine facade through adapters in `cri.server` (the engine never imports `cri`).
Sandbox and container configuration cross the port as the CRI messages themselves: turning
them into engine specs is the adapter's job, in one place. Every port method raises only
`engine.errors` classes; a missing port makes its RPCs answer UNIMPLEMENTED.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Generic, Protocol, TypeVar, runtime_checkable

from cri.api import runtime_pb2 as pb


@dataclasses.dataclass(frozen=True)
class RegistryAuth:
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    auth: str = dataclasses.field(default="", repr=False)  # base64 "user:password"
    server_address: str = ""
    identity_token: str = dataclasses.field(default="", repr=False)
    registry_token: str = dataclasses.field(default="", repr=False)


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    id: str  # the image ID, also what PullImage returns
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    size: int = 0
    uid: int | None = None  # numeric user of the image config, if numeric
    username: str = ""  # non-numeric user of the image config
    pinned: bool = False


@dataclasses.dataclass(frozen=True)
class FilesystemUsage:
    mountpoint: str
    used_bytes: int
    inodes_used: int
    timestamp_ns: int


T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class StatusWithInfo(Generic[T]):
    status: T
    info: Mapping[str, str] = dataclasses.field(default_factory=dict)  # JSON values


@dataclasses.dataclass(frozen=True)
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


@dataclasses.dataclass(frozen=True)
class ContainerStatsEntry:
    pod_sandbox_id: str
    stats: pb.ContainerStats


class ImagePort(Protocol):
    def list_images(self) -> Sequence[ImageRecord]: ...

    def image_status(self, ref: str) -> ImageRecord | None:
        """None when the reference resolves to no local image."""
        ...

    def pull_image(self, ref: str, *, auth: RegistryAuth | None) -> str:
        """Pull and return the image ID."""
        ...

    def remove_image(self, ref: str) -> None:
        """Raise NotFound when there is no such image."""
        ...

    def image_fs_usage(self) -> Sequence[FilesystemUsage]: ...


class NetworkPort(Protocol):
    """The part of engine.networkdriver.base.NetworkDriver the CRI uses."""

    def ready(self) -> tuple[bool, str]: ...

    def set_pod_cidr(self, cidr: str) -> None: ...


class SandboxPort(Protocol):
    def ready(self) -> tuple[bool, str]:
        """(True, "") when sandboxes and containers can run, else (False, reason)."""
        ...

    def run_sandbox(self, config: pb.PodSandboxConfig, *, runtime_handler: str) -> str: ...

    def stop_sandbox(self, sandbox_id: str) -> None: ...

    def remove_sandbox(self, sandbox_id: str) -> None: ...

    def sandbox_status(self, sandbox_id: str, *,
                       verbose: bool) -> StatusWithInfo[pb.PodSandboxStatus]: ...

    def list_sandboxes(self) -> Sequence[pb.PodSandbox]: ...


@runtime_checkable
class HandlerFeaturesPort(Protocol):
    """Optional on a ContainerPort: the features Status reports (RuntimeHandlerFeatures,
    RuntimeFeatures)."""

    def recursive_read_only_mounts(self) -> bool: ...

    def supplemental_groups_policy(self) -> bool: ...


@runtime_checkable
class UserNamespacesPort(Protocol):
    """Optional on a ContainerPort: whether pods of a runtime handler ("" = the default) can
    have their own user namespace (RuntimeHandlerFeatures.user_namespaces)."""

    def user_namespaces(self, handler: str) -> bool: ...


class ContainerPort(Protocol):
    def create_container(self, sandbox_id: str, config: pb.ContainerConfig, *,
                         sandbox_config: pb.PodSandboxConfig) -> str: ...

    def start_container(self, container_id: str) -> None: ...

    def stop_container(self, container_id: str, *, timeout_s: int) -> None: ...

    def remove_container(self, container_id: str) -> None: ...

    def container_status(self, container_id: str, *,
                         verbose: bool) -> StatusWithInfo[pb.ContainerStatus]: ...

    def list_containers(self) -> Sequence[pb.Container]: ...

    def update_resources(self, container_id: str,
                         resources: pb.LinuxContainerResources) -> None: ...

    def reopen_log(self, container_id: str) -> None: ...

    def exec_sync(self, container_id: str, cmd: Sequence[str], *,
                  timeout_s: int) -> ExecResult: ...


class StreamingPort(Protocol):
    """The streaming server: registers a session and returns its single-use URL."""

    def prepare_exec(self, request: pb.ExecRequest) -> str: ...

    def prepare_attach(self, request: pb.AttachRequest) -> str: ...

    def prepare_port_forward(self, request: pb.PortForwardRequest) -> str: ...


class StatsPort(Protocol):
    def container_stats(self, container_id: str) -> pb.ContainerStats: ...

    def list_container_stats(self) -> Sequence[ContainerStatsEntry]: ...

    def sandbox_stats(self, sandbox_id: str) -> pb.PodSandboxStats: ...

    def list_sandbox_stats(self) -> Sequence[pb.PodSandboxStats]: ...


class EventSubscription(Protocol):
    def get(self, timeout: float) -> pb.ContainerEventResponse | None:
        """The next event, or None when none arrived within `timeout` seconds."""
        ...

    def close(self) -> None: ...


class EventPort(Protocol):
    def subscribe(self) -> EventSubscription: ...


@dataclasses.dataclass(frozen=True)
class Ports:
    """The engine parts a given engined build has; None means "not wired"."""

    runtime_name: str = "kubelet-py"
    runtime_version: str = "0.0.0"
    runtime_handlers: tuple[str, ...] = ()  # RuntimeClass handlers besides the default ""
    sandboxes: SandboxPort | None = None
    containers: ContainerPort | None = None
    images: ImagePort | None = None
    network: NetworkPort | None = None
    streaming: StreamingPort | None = None
    stats: StatsPort | None = None
    events: EventPort | None = None
