"""Version, Status, RuntimeConfig and UpdateRuntimeConfig."""
from __future__ import annotations

import ipaddress
import json

import grpc

from cri.api import runtime_pb2 as pb
from cri.errors import Unimplemented
from cri.server.dispatch import Impl
from cri.server.ports import HandlerFeaturesPort, Ports, UserNamespacesPort
from engine.errors import InvalidArgument

RUNTIME_API_VERSION = "v1"
KUBE_API_VERSION = "0.1.0"  # the CRI "version" field runtimes answer with

RUNTIME_READY = "RuntimeReady"
NETWORK_READY = "NetworkReady"


def _condition(kind: str, ok: bool, reason: str, message: str) -> pb.RuntimeCondition:
    if ok:
        return pb.RuntimeCondition(type=kind, status=True)
    return pb.RuntimeCondition(type=kind, status=False, reason=reason, message=message)


def parse_pod_cidrs(value: str) -> list[str]:
    """`10.244.1.0/24` or a dual-stack `v4,v6` pair, normalised; InvalidArgument if bad."""
    cidrs = []
    for part in value.split(","):
        try:
            cidrs.append(str(ipaddress.ip_network(part.strip(), strict=False)))
        except ValueError as exc:
            raise InvalidArgument(f"pod CIDR {part.strip()!r} is not a CIDR: {exc}") from exc
    if len(cidrs) > 2 or len({ipaddress.ip_network(c).version for c in cidrs}) != len(cidrs):
        raise InvalidArgument(f"pod CIDR {value!r}: at most one IPv4 and one IPv6 range")
    return cidrs


class RuntimeInfo:
    """Answers from what the daemon was built with; never claims a part it lacks."""

    def __init__(self, ports: Ports, *, cgroup_driver: int = pb.CGROUPFS) -> None:
        self._ports = ports
        self._cgroup_driver = cgroup_driver

    def rpcs(self) -> dict[str, Impl]:
        return {"Version": self.Version, "Status": self.Status,
                "RuntimeConfig": self.RuntimeConfig,
                "UpdateRuntimeConfig": self.UpdateRuntimeConfig}

    def Version(self, request: pb.VersionRequest,
                context: grpc.ServicerContext) -> pb.VersionResponse:
        return pb.VersionResponse(version=KUBE_API_VERSION,
                                  runtime_name=self._ports.runtime_name,
                                  runtime_version=self._ports.runtime_version,
                                  runtime_api_version=RUNTIME_API_VERSION)

    def conditions(self) -> list[pb.RuntimeCondition]:
        sandboxes, network = self._ports.sandboxes, self._ports.network
        if sandboxes is None:
            runtime = _condition(RUNTIME_READY, False, "RuntimeNotWired",
                                 "this engined has no sandbox/container runtime wired")
        else:
            ok, why = sandboxes.ready()
            runtime = _condition(RUNTIME_READY, ok, "RuntimeNotReady", why)
        if network is None:
            net = _condition(NETWORK_READY, False, "NetworkPluginNotReady",
                             "this engined has no network driver wired")
        else:
            ok, why = network.ready()
            net = _condition(NETWORK_READY, ok, "NetworkPluginNotReady", why)
        return [runtime, net]

    def handler_features(self, handler: str = "") -> pb.RuntimeHandlerFeatures:
        containers = self._ports.containers
        rro = isinstance(containers, HandlerFeaturesPort) and \
            containers.recursive_read_only_mounts()
        userns = isinstance(containers, UserNamespacesPort) and \
            containers.user_namespaces(handler)
        return pb.RuntimeHandlerFeatures(recursive_read_only_mounts=rro, user_namespaces=userns)

    def features(self) -> pb.RuntimeFeatures:
        containers = self._ports.containers
        sgp = isinstance(containers, HandlerFeaturesPort) and \
            containers.supplemental_groups_policy()
        return pb.RuntimeFeatures(supplemental_groups_policy=sgp)

    def Status(self, request: pb.StatusRequest,
               context: grpc.ServicerContext) -> pb.StatusResponse:
        response = pb.StatusResponse(
            status=pb.RuntimeStatus(conditions=self.conditions()),
            runtime_handlers=[pb.RuntimeHandler(name=name, features=self.handler_features(name))
                              for name in ("", *self._ports.runtime_handlers)],
            features=self.features())
        if request.verbose:
            wired = {name: getattr(self._ports, name) is not None
                     for name in ("sandboxes", "containers", "images", "network",
                                  "streaming", "stats", "events")}
            response.info["wired"] = json.dumps(wired, sort_keys=True)
            response.info["cgroupDriver"] = json.dumps(pb.CgroupDriver.Name(self._cgroup_driver))
        return response

    def RuntimeConfig(self, request: pb.RuntimeConfigRequest,
                      context: grpc.ServicerContext) -> pb.RuntimeConfigResponse:
        return pb.RuntimeConfigResponse(
            linux=pb.LinuxRuntimeConfiguration(cgroup_driver=self._cgroup_driver))  # type: ignore[arg-type]

    def UpdateRuntimeConfig(self, request: pb.UpdateRuntimeConfigRequest,
                            context: grpc.ServicerContext) -> pb.UpdateRuntimeConfigResponse:
        cidr = request.runtime_config.network_config.pod_cidr
        if not cidr:
            return pb.UpdateRuntimeConfigResponse()  # nothing to change
        cidrs = parse_pod_cidrs(cidr)
        if self._ports.network is None:
            raise Unimplemented("cannot apply a pod CIDR: no network driver is wired")
        self._ports.network.set_pod_cidr(",".join(cidrs))
        return pb.UpdateRuntimeConfigResponse()
