"""Pod and container specs translated into CRI PodSandboxConfig and ContainerConfig."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cri.api import runtime_pb2 as pb
from kubelet_py.errors import KubeletError
from kubelet_py.node.allocatable import Allocatable
from kubelet_py.pods.envvars import Environment
from kubelet_py.pods.expansion import expand, lookup_in
from kubelet_py.pods.model import (
    ANNOTATION_CONTAINER_HASH,
    ANNOTATION_RESTART_COUNT,
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    Pod,
    container_hash,
)
from kubelet_py.pods.quantity import QuantityError, bytes_of, millicores
from kubelet_py.pods.volumes import PreparedVolume

Obj = dict[str, Any]
CPU_PERIOD = 100_000
MIN_SHARES = 2
PROTOCOLS = {"TCP": pb.TCP, "UDP": pb.UDP, "SCTP": pb.SCTP}


class ConfigProblem(KubeletError):
    """The spec cannot be turned into a runtime config (CreateContainerConfigError)."""


@dataclasses.dataclass(frozen=True)
class NodeContext:
    node_name: str
    host_ips: tuple[str, ...]
    cluster_dns: tuple[str, ...]
    cluster_domain: str
    log_root: Path
    allocatable: Allocatable
    """Defaults for resourceFieldRef limits a container does not set."""


def pod_labels(pod: Pod) -> dict[str, str]:
    meta = pod["metadata"]
    return {**(meta.get("labels") or {}), LABEL_POD_NAME: meta["name"],
            LABEL_POD_NAMESPACE: meta["namespace"], LABEL_POD_UID: meta["uid"]}


def log_directory(ctx: NodeContext, pod: Pod) -> str:
    meta = pod["metadata"]
    return str(ctx.log_root / f"{meta['namespace']}_{meta['name']}_{meta['uid']}")


def _dns(ctx: NodeContext, pod: Pod) -> pb.DNSConfig | None:
    spec = pod["spec"]
    policy = spec.get("dnsPolicy", "ClusterFirst")
    custom = spec.get("dnsConfig") or {}
    servers: list[str] = []
    searches: list[str] = []
    options = ["ndots:5"]
    if (policy == "ClusterFirst" and not spec.get("hostNetwork") and ctx.cluster_dns) or \
            (policy == "ClusterFirstWithHostNet" and ctx.cluster_dns):
        ns, domain = pod["metadata"]["namespace"], ctx.cluster_domain
        servers = list(ctx.cluster_dns)
        searches = [f"{ns}.svc.{domain}", f"svc.{domain}", domain]
    elif policy != "None":
        options = []
    servers += custom.get("nameservers") or []
    searches += custom.get("searches") or []
    options += [o["name"] + (f":{o['value']}" if o.get("value") else "")
                for o in custom.get("options") or []]
    if not (servers or searches or options):
        return None  # the runtime uses the host's resolv.conf
    return pb.DNSConfig(servers=servers, searches=searches, options=options)


def sandbox_config(ctx: NodeContext, pod: Pod, *, attempt: int,
                   userns: pb.UserNamespace | None = None) -> pb.PodSandboxConfig:
    """`userns`: the pod's user namespace options (kubelet_py.pods.userns); the same ones
    go on every container."""
    meta, spec = pod["metadata"], pod["spec"]
    host_network = bool(spec.get("hostNetwork"))
    ports = []
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                ports.append(pb.PortMapping(
                    protocol=PROTOCOLS.get(port.get("protocol", "TCP"), pb.TCP),
                    container_port=port["containerPort"], host_port=port["hostPort"],
                    host_ip=port.get("hostIP", "")))
    security = spec.get("securityContext") or {}
    ns_options = pb.NamespaceOption(
        network=pb.NODE if host_network else pb.POD,
        pid=pb.NODE if spec.get("hostPID") else
        (pb.POD if spec.get("shareProcessNamespace") else pb.CONTAINER),
        ipc=pb.NODE if spec.get("hostIPC") else pb.POD, userns_options=userns)
    linux = pb.LinuxPodSandboxConfig(
        security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=ns_options,
            run_as_user=_int64(security.get("runAsUser")),
            run_as_group=_int64(security.get("runAsGroup")),
            supplemental_groups=security.get("supplementalGroups") or []),
        sysctls={s["name"]: s["value"] for s in security.get("sysctls") or []})
    hostname = ctx.node_name if host_network else spec.get("hostname", meta["name"])
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=meta["name"], uid=meta["uid"],
                                       namespace=meta["namespace"], attempt=attempt),
        hostname=hostname[:63], log_directory=log_directory(ctx, pod),
        dns_config=_dns(ctx, pod), port_mappings=ports, labels=pod_labels(pod),
        annotations=meta.get("annotations") or {}, linux=linux)


def _int64(value: int | None) -> pb.Int64Value | None:
    return pb.Int64Value(value=value) if value is not None else None


def _resources(spec: Obj) -> pb.LinuxContainerResources:
    res = spec.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    try:
        cpu_request = millicores(requests.get("cpu", limits.get("cpu", 0)))
        shares = max(MIN_SHARES, cpu_request * 1024 // 1000) if cpu_request else MIN_SHARES
        quota = millicores(limits["cpu"]) * CPU_PERIOD // 1000 if "cpu" in limits else 0
        memory = bytes_of(limits["memory"]) if "memory" in limits else 0
    except QuantityError as exc:
        raise ConfigProblem(str(exc)) from exc
    return pb.LinuxContainerResources(cpu_shares=shares, cpu_period=CPU_PERIOD if quota else 0,
                                      cpu_quota=quota, memory_limit_in_bytes=memory)


def _security(pod: Pod, spec: Obj,
              userns: pb.UserNamespace | None) -> pb.LinuxContainerSecurityContext:
    pod_sc = pod["spec"].get("securityContext") or {}
    sc = spec.get("securityContext") or {}
    caps = sc.get("capabilities") or {}
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    host_network = bool(pod["spec"].get("hostNetwork"))
    return pb.LinuxContainerSecurityContext(
        capabilities=pb.Capability(add_capabilities=caps.get("add") or [],
                                   drop_capabilities=caps.get("drop") or []),
        privileged=bool(sc.get("privileged")),
        namespace_options=pb.NamespaceOption(
            network=pb.NODE if host_network else pb.POD,
            pid=pb.NODE if pod["spec"].get("hostPID") else
            (pb.POD if pod["spec"].get("shareProcessNamespace") else pb.CONTAINER),
            ipc=pb.NODE if pod["spec"].get("hostIPC") else pb.POD,
            userns_options=userns),
        run_as_user=_int64(user), run_as_group=_int64(group),
        readonly_rootfs=bool(sc.get("readOnlyRootFilesystem")),
        supplemental_groups=pod_sc.get("supplementalGroups") or [],
        no_new_privs=sc.get("allowPrivilegeEscalation") is False)


def container_config(ctx: NodeContext, pod: Pod, spec: Obj, *, attempt: int,
                     volumes: dict[str, PreparedVolume], image_ref: str,
                     environment: Environment,
                     userns: pb.UserNamespace | None = None) -> pb.ContainerConfig:
    """The CRI config of one container; `$(VAR)` in command and args expanded from its
    environment."""
    lookup = lookup_in(environment.as_dict())
    mounts = []
    for vm in spec.get("volumeMounts") or []:
        vol = volumes.get(vm["name"])
        if vol is None:
            raise ConfigProblem(f"container {spec['name']}: no volume named {vm['name']}")
        host = vol.host_path + ("/" + vm["subPath"] if vm.get("subPath") else "")
        mounts.append(pb.Mount(container_path=vm["mountPath"], host_path=host,
                               readonly=bool(vm.get("readOnly")) or vol.read_only))
    name = spec["name"]
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name, attempt=attempt),
        image=pb.ImageSpec(image=image_ref or spec["image"], user_specified_image=spec["image"]),
        command=[expand(c, lookup) for c in spec.get("command") or []],
        args=[expand(a, lookup) for a in spec.get("args") or []],
        working_dir=spec.get("workingDir", ""),
        envs=[pb.KeyValue(key=k, value=v.encode(errors="surrogateescape"))
              for k, v in environment.env],
        mounts=mounts,
        labels={LABEL_CONTAINER_NAME: name, LABEL_POD_NAME: pod["metadata"]["name"],
                LABEL_POD_NAMESPACE: pod["metadata"]["namespace"],
                LABEL_POD_UID: pod["metadata"]["uid"]},
        annotations={ANNOTATION_CONTAINER_HASH: container_hash(spec),
                     ANNOTATION_RESTART_COUNT: str(attempt),
                     "io.kubernetes.container.terminationMessagePath":
                         spec.get("terminationMessagePath", "/dev/termination-log"),
                     "io.kubernetes.pod.terminationGracePeriod":
                         str(pod["spec"].get("terminationGracePeriodSeconds", 30))},
        log_path=f"{name}/{attempt}.log", stdin=bool(spec.get("stdin")),
        stdin_once=bool(spec.get("stdinOnce")), tty=bool(spec.get("tty")),
        linux=pb.LinuxContainerConfig(resources=_resources(spec),
                                      security_context=_security(pod, spec, userns)))
