"""RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox."""
from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Iterator, Sequence

import grpc

from cri.api import runtime_pb2 as pb
from cri.server import validate as v
from cri.server.dispatch import Impl
from cri.server.ports import SandboxPort
from engine.errors import InvalidArgument, NotFound

HOST_NAME_MAX = 64  # Linux: what sethostname(2) takes


def check_sandbox_config(config: pb.PodSandboxConfig) -> None:
    meta = config.metadata
    v.require(meta.name, "config.metadata.name")
    v.require(meta.namespace, "config.metadata.namespace")
    v.require(meta.uid, "config.metadata.uid")
    if config.log_directory:
        v.absolute(config.log_directory, "config.log_directory")
    v.no_dotdot(config.linux.cgroup_parent, "config.linux.cgroup_parent")
    if config.hostname:
        v.token(config.hostname, "config.hostname")
        if len(config.hostname.encode()) > HOST_NAME_MAX:
            raise InvalidArgument(f"config.hostname is longer than {HOST_NAME_MAX} bytes")
    dns = config.dns_config
    for i, server in enumerate(dns.servers):
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(
                f"config.dns_config.servers[{i}] {server!r} is not an IP address") from None
    for field in ("searches", "options"):
        for i, item in enumerate(getattr(dns, field)):
            v.token(item, f"config.dns_config.{field}[{i}]")
    for i, mapping in enumerate(config.port_mappings):
        v.known_enum(mapping.protocol, pb.Protocol.DESCRIPTOR, f"port_mappings[{i}].protocol")
        if not 0 < mapping.container_port < 65536:
            raise InvalidArgument(
                f"port_mappings[{i}].container_port {mapping.container_port} is not a port")
        if not 0 <= mapping.host_port < 65536:
            raise InvalidArgument(
                f"port_mappings[{i}].host_port {mapping.host_port} is not a port")
    v.namespace_modes(config.linux.security_context.namespace_options)


def matches(item: pb.PodSandbox, flt: pb.PodSandboxFilter) -> bool:
    if not v.id_matches(item.id, flt.id):
        return False
    if flt.HasField("state") and item.state != flt.state.state:
        return False
    return v.labels_match(item.labels, flt.label_selector)


class Sandboxes:
    def __init__(self, port: SandboxPort, *, clock_ns: Callable[[], int]) -> None:
        self._port = port
        self._clock_ns = clock_ns
        # The unfiltered answer, kept while the port hands back the same listing object.
        self._everything: tuple[Sequence[pb.PodSandbox], pb.ListPodSandboxResponse] | None = None

    def rpcs(self) -> dict[str, Impl]:
        return {"RunPodSandbox": self.RunPodSandbox, "StopPodSandbox": self.StopPodSandbox,
                "RemovePodSandbox": self.RemovePodSandbox,
                "PodSandboxStatus": self.PodSandboxStatus,
                "ListPodSandbox": self.ListPodSandbox,
                "StreamPodSandboxes": self.StreamPodSandboxes}

    def RunPodSandbox(self, request: pb.RunPodSandboxRequest,
                      context: grpc.ServicerContext) -> pb.RunPodSandboxResponse:
        if not request.HasField("config"):
            raise InvalidArgument("config is required")
        check_sandbox_config(request.config)
        sandbox_id = self._port.run_sandbox(request.config,
                                            runtime_handler=request.runtime_handler)
        return pb.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)

    def StopPodSandbox(self, request: pb.StopPodSandboxRequest,
                       context: grpc.ServicerContext) -> pb.StopPodSandboxResponse:
        with contextlib.suppress(NotFound):  # idempotent: nothing left to stop
            self._port.stop_sandbox(v.require(request.pod_sandbox_id, "pod_sandbox_id"))
        return pb.StopPodSandboxResponse()

    def RemovePodSandbox(self, request: pb.RemovePodSandboxRequest,
                         context: grpc.ServicerContext) -> pb.RemovePodSandboxResponse:
        with contextlib.suppress(NotFound):  # idempotent: already removed
            self._port.remove_sandbox(v.require(request.pod_sandbox_id, "pod_sandbox_id"))
        return pb.RemovePodSandboxResponse()

    def PodSandboxStatus(self, request: pb.PodSandboxStatusRequest,
                         context: grpc.ServicerContext) -> pb.PodSandboxStatusResponse:
        result = self._port.sandbox_status(v.require(request.pod_sandbox_id, "pod_sandbox_id"),
                                           verbose=request.verbose)
        return pb.PodSandboxStatusResponse(
            status=result.status, info=dict(result.info) if request.verbose else {},
            timestamp=self._clock_ns())

    def _listed(self, flt: pb.PodSandboxFilter) -> Sequence[pb.PodSandbox]:
        listed = self._port.list_sandboxes()
        if not flt.ByteSize():
            return listed
        if flt.HasField("state"):
            v.known_enum(flt.state.state, pb.PodSandboxState.DESCRIPTOR, "filter.state")
        return [s for s in listed if matches(s, flt)]

    def ListPodSandbox(self, request: pb.ListPodSandboxRequest,
                       context: grpc.ServicerContext) -> pb.ListPodSandboxResponse:
        if request.filter.ByteSize():
            return pb.ListPodSandboxResponse(items=self._listed(request.filter))
        listed = self._port.list_sandboxes()
        cached = self._everything
        if cached is not None and cached[0] is listed:
            return cached[1]  # never mutated once built: only serialized
        response = pb.ListPodSandboxResponse(items=listed)
        self._everything = (listed, response)
        return response

    def StreamPodSandboxes(self, request: pb.StreamPodSandboxesRequest,
                           context: grpc.ServicerContext
                           ) -> Iterator[pb.StreamPodSandboxesResponse]:
        for batch in v.batches(self._listed(request.filter)):
            yield pb.StreamPodSandboxesResponse(pod_sandboxes=batch)
