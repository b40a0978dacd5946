"""CreateContainer, Start/Stop/RemoveContainer, ListContainers, ContainerStatus, updates."""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

import grpc

from cri.api import runtime_pb2 as pb
from cri.errors import Unimplemented
from cri.server import validate as v
from cri.server.dispatch import Impl
from cri.server.ports import ContainerPort
from engine.errors import InvalidArgument, NotFound

MAX_STOP_TIMEOUT_S = 24 * 3600
MAX_KEPT_RESPONSES = 4096  # ContainerStatus answers kept for reuse (then start over)


def check_resources(linux: pb.LinuxContainerResources, field: str) -> None:
    for name in ("cpu_period", "cpu_shares", "memory_limit_in_bytes"):  # cpu_quota: -1 is
        v.non_negative(getattr(linux, name), f"{field}.{name}")  # "no quota" in v1 terms
    if not -1000 <= linux.oom_score_adj <= 1000:
        raise InvalidArgument(f"{field}.oom_score_adj {linux.oom_score_adj} is outside "
                              "[-1000, 1000]")


def check_container_config(config: pb.ContainerConfig) -> None:
    v.require(config.metadata.name, "config.metadata.name")
    v.require(config.image.image, "config.image.image")
    v.command_size([*config.command, *config.args], "config.command + config.args")
    if config.working_dir:
        v.absolute(config.working_dir, "config.working_dir")
    if config.log_path:
        v.relative(config.log_path, "config.log_path")
    for i, mount in enumerate(config.mounts):
        v.absolute(mount.container_path, f"config.mounts[{i}].container_path")
        if mount.host_path:
            v.absolute(mount.host_path, f"config.mounts[{i}].host_path")
        elif not mount.image.image:
            raise InvalidArgument(f"config.mounts[{i}] needs a host_path or an image")
        if mount.host_path and mount.image.image:
            raise InvalidArgument(f"config.mounts[{i}]: host_path and image exclude each other")
        if mount.image_sub_path:
            v.relative(mount.image_sub_path, f"config.mounts[{i}].image_sub_path")
        v.known_enum(mount.propagation, pb.MountPropagation.DESCRIPTOR,
                     f"config.mounts[{i}].propagation")
    for i, device in enumerate(config.devices):
        v.absolute(device.container_path, f"config.devices[{i}].container_path")
        v.absolute(device.host_path, f"config.devices[{i}].host_path")
        if set(device.permissions) - set("rwm"):
            raise InvalidArgument(
                f"config.devices[{i}].permissions {device.permissions!r}: only r, w, m")
    for i, env in enumerate(config.envs):
        if not env.key or "=" in env.key or "\x00" in env.key:
            raise InvalidArgument(f"config.envs[{i}].key {env.key!r} is not a variable name")
    v.known_enum(config.stop_signal, pb.Signal.DESCRIPTOR, "config.stop_signal")
    check_resources(config.linux.resources, "config.linux.resources")
    sc = config.linux.security_context
    if sc.HasField("run_as_group") and not (sc.HasField("run_as_user") or sc.run_as_username):
        raise InvalidArgument("run_as_group needs run_as_user or run_as_username")
    for field in ("seccomp", "apparmor"):
        v.known_enum(getattr(sc, field).profile_type, pb.SecurityProfile.ProfileType.DESCRIPTOR,
                     f"security_context.{field}.profile_type")
    v.known_enum(sc.supplemental_groups_policy, pb.SupplementalGroupsPolicy.DESCRIPTOR,
                 "security_context.supplemental_groups_policy")
    ns = sc.namespace_options
    v.namespace_modes(ns)
    if ns.pid == pb.TARGET and not ns.target_id:
        raise InvalidArgument("namespace_options.pid is TARGET but target_id is empty")


@dataclasses.dataclass(frozen=True)
class Selector:
    """A ContainerFilter read once, so a listing does not re-read it per container."""

    id: str
    pod_sandbox_id: str
    state: int | None
    labels: tuple[tuple[str, str], ...]

    def __call__(self, item: pb.Container) -> bool:
        if self.id and not item.id.startswith(self.id):
            return False
        if self.pod_sandbox_id and not item.pod_sandbox_id.startswith(self.pod_sandbox_id):
            return False
        if self.state is not None and item.state != self.state:
            return False
        if self.labels:
            labels = item.labels
            return all(labels.get(k) == v for k, v in self.labels)
        return True


def selector(flt: pb.ContainerFilter) -> Selector | None:
    """None when the filter selects everything."""
    if not flt.ByteSize():
        return None
    state = None
    if flt.HasField("state"):
        state = v.known_enum(flt.state.state, pb.ContainerState.DESCRIPTOR, "filter.state")
    return Selector(id=flt.id, pod_sandbox_id=flt.pod_sandbox_id, state=state,
                    labels=tuple(flt.label_selector.items()))


def matches(item: pb.Container, flt: pb.ContainerFilter) -> bool:
    sel = selector(flt)
    return sel is None or sel(item)


class Containers:
    def __init__(self, port: ContainerPort) -> None:
        self._port = port
        # The unfiltered answer, kept while the port hands back the same listing object
        # (a port whose listing has not changed may return the very same sequence).
        self._everything: tuple[Sequence[pb.Container], pb.ListContainersResponse] | None = None
        # Likewise each container's plain ContainerStatus answer, while the port hands back
        # the same status object: container ID -> (status, response).
        self._responses: dict[str, tuple[pb.ContainerStatus, pb.ContainerStatusResponse]] = {}

    def rpcs(self) -> dict[str, Impl]:
        return {"CreateContainer": self.CreateContainer,
                "StartContainer": self.StartContainer, "StopContainer": self.StopContainer,
                "RemoveContainer": self.RemoveContainer,
                "ListContainers": self.ListContainers,
                "StreamContainers": self.StreamContainers,
                "ContainerStatus": self.ContainerStatus,
                "UpdateContainerResources": self.UpdateContainerResources,
                "ReopenContainerLog": self.ReopenContainerLog}

    def CreateContainer(self, request: pb.CreateContainerRequest,
                        context: grpc.ServicerContext) -> pb.CreateContainerResponse:
        sandbox_id = v.require(request.pod_sandbox_id, "pod_sandbox_id")
        if not request.HasField("config"):
            raise InvalidArgument("config is required")
        check_container_config(request.config)
        container_id = self._port.create_container(sandbox_id, request.config,
                                                   sandbox_config=request.sandbox_config)
        return pb.CreateContainerResponse(container_id=container_id)

    def StartContainer(self, request: pb.StartContainerRequest,
                       context: grpc.ServicerContext) -> pb.StartContainerResponse:
        self._port.start_container(v.require(request.container_id, "container_id"))
        return pb.StartContainerResponse()

    def StopContainer(self, request: pb.StopContainerRequest,
                      context: grpc.ServicerContext) -> pb.StopContainerResponse:
        container_id = v.require(request.container_id, "container_id")
        timeout = v.non_negative(request.timeout, "timeout")
        if timeout > MAX_STOP_TIMEOUT_S:
            raise InvalidArgument(f"timeout {timeout}s is more than a day")
        with contextlib.suppress(NotFound):  # idempotent: nothing left to stop
            self._port.stop_container(container_id, timeout_s=timeout)
        return pb.StopContainerResponse()

    def RemoveContainer(self, request: pb.RemoveContainerRequest,
                        context: grpc.ServicerContext) -> pb.RemoveContainerResponse:
        with contextlib.suppress(NotFound):  # idempotent: already removed
            self._port.remove_container(v.require(request.container_id, "container_id"))
        return pb.RemoveContainerResponse()

    def _listed(self, flt: pb.ContainerFilter) -> Sequence[pb.Container]:
        listed = self._port.list_containers()
        sel = selector(flt)
        return listed if sel is None else [c for c in listed if sel(c)]

    def ListContainers(self, request: pb.ListContainersRequest,
                       context: grpc.ServicerContext) -> pb.ListContainersResponse:
        sel = selector(request.filter)
        listed = self._port.list_containers()
        if sel is not None:
            return pb.ListContainersResponse(containers=[c for c in listed if sel(c)])
        cached = self._everything
        if cached is not None and cached[0] is listed:
            return cached[1]  # never mutated once built: only serialized
        response = pb.ListContainersResponse(containers=listed)
        self._everything = (listed, response)
        return response

    def StreamContainers(self, request: pb.StreamContainersRequest,
                         context: grpc.ServicerContext) -> Iterator[pb.StreamContainersResponse]:
        for batch in v.batches(self._listed(request.filter)):
            yield pb.StreamContainersResponse(containers=batch)

    def ContainerStatus(self, request: pb.ContainerStatusRequest,
                        context: grpc.ServicerContext) -> pb.ContainerStatusResponse:
        result = self._port.container_status(v.require(request.container_id, "container_id"),
                                             verbose=request.verbose)
        if request.verbose:
            return pb.ContainerStatusResponse(status=result.status, info=dict(result.info))
        known = self._responses.get(result.status.id)
        if known is not None and known[0] is result.status:
            return known[1]  # never mutated once built: only serialized
        response = pb.ContainerStatusResponse(status=result.status)
        if len(self._responses) >= MAX_KEPT_RESPONSES:
            self._responses.clear()
        self._responses[result.status.id] = (result.status, response)
        return response

    def UpdateContainerResources(self, request: pb.UpdateContainerResourcesRequest,
                                 context: grpc.ServicerContext
                                 ) -> pb.UpdateContainerResourcesResponse:
        container_id = v.require(request.container_id, "container_id")
        if not request.HasField("linux"):
            if request.HasField("windows"):
                raise Unimplemented("Windows container resources are not supported")
            raise InvalidArgument("linux resources are required")
        check_resources(request.linux, "linux")
        self._port.update_resources(container_id, request.linux)
        return pb.UpdateContainerResourcesResponse()

    def ReopenContainerLog(self, request: pb.ReopenContainerLogRequest,
                           context: grpc.ServicerContext) -> pb.ReopenContainerLogResponse:
        self._port.reopen_log(v.require(request.container_id, "container_id"))
        return pb.ReopenContainerLogResponse()
