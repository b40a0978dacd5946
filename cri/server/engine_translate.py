"""CRI messages to engine runtime specs, and engine records back to CRI messages.

What the engine cannot do is refused with Unimplemented naming the field, never dropped
silently: a pod that asked for a device or an AppArmor profile must not run without it.
"""
from __future__ import annotations

import signal
from collections.abc import Iterable

from cri.api import runtime_pb2 as pb
from cri.errors import Unimplemented
from engine.cgroups.base import Resources
from engine.errors import InvalidArgument
from engine.execdriver.spec import IDMapping
from engine.networkdriver.base import PortMapping
from engine.runtime import spec, stopsignal
from engine.runtime.state import ContainerState
from engine.runtime.status import SandboxStatus, Status

PROPAGATION = {pb.PROPAGATION_PRIVATE: "private", pb.PROPAGATION_HOST_TO_CONTAINER: "rslave",
               pb.PROPAGATION_BIDIRECTIONAL: "rshared"}
SECCOMP = {pb.SecurityProfile.RuntimeDefault: "RuntimeDefault",
           pb.SecurityProfile.Unconfined: "Unconfined",
           pb.SecurityProfile.Localhost: "Localhost"}
STATES = {Status.CREATED: pb.CONTAINER_CREATED, Status.RUNNING: pb.CONTAINER_RUNNING,
          Status.EXITED: pb.CONTAINER_EXITED, Status.UNKNOWN: pb.CONTAINER_UNKNOWN}


def sandbox_config(config: pb.PodSandboxConfig, *, runtime_handler: str) -> spec.SandboxConfig:
    linux = config.linux
    ctx = linux.security_context
    ns = ctx.namespace_options
    uids, gids = user_namespace(ns)
    if ctx.selinux_options.ByteSize():
        raise Unimplemented("SELinux options are not supported (no SELinux on this node)")
    dns = None
    if config.HasField("dns_config"):
        dns = spec.DNSConfig(servers=tuple(config.dns_config.servers),
                             searches=tuple(config.dns_config.searches),
                             options=tuple(config.dns_config.options))
    return spec.SandboxConfig(
        name=config.metadata.name, namespace=config.metadata.namespace,
        uid=config.metadata.uid, attempt=config.metadata.attempt, hostname=config.hostname,
        log_directory=config.log_directory, dns=dns,
        # host_port 0 means "expose no host port" in the CRI: nothing for the network to map
        port_mappings=tuple(PortMapping(protocol=pb.Protocol.Name(p.protocol).lower(),
                                        container_port=p.container_port, host_port=p.host_port,
                                        host_ip=p.host_ip)
                            for p in config.port_mappings if p.host_port > 0),
        labels=dict(config.labels), annotations=dict(config.annotations),
        cgroup_parent=linux.cgroup_parent, sysctls=dict(linux.sysctls),
        host_network=ns.network == pb.NODE, host_pid=ns.pid == pb.NODE,
        host_ipc=ns.ipc == pb.NODE, share_pid=ns.pid == pb.POD,
        privileged=ctx.privileged, runtime_handler=runtime_handler,
        uid_mappings=uids, gid_mappings=gids)


def _id_mappings(maps: Iterable[pb.IDMapping]) -> tuple[IDMapping, ...]:
    return tuple(IDMapping(container_id=m.container_id, host_id=m.host_id, size=m.length)
                 for m in maps)


def user_namespace(ns: pb.NamespaceOption) -> tuple[tuple[IDMapping, ...],
                                                     tuple[IDMapping, ...]]:
    """(uid maps, gid maps) of NamespaceOption.userns_options: unset or NODE = the host's
    (no maps); POD = the pod's own user namespace, which needs both; CONTAINER and TARGET
    are not modes a user namespace can have (CRI)."""
    if not ns.HasField("userns_options"):
        return (), ()
    u = ns.userns_options
    if u.mode == pb.NODE:
        if u.uids or u.gids:
            raise InvalidArgument("user namespace mode NODE takes no uid/gid mappings")
        return (), ()
    if u.mode == pb.POD:
        if not (u.uids and u.gids):
            raise InvalidArgument("user namespace mode POD needs uid and gid mappings")
        return _id_mappings(u.uids), _id_mappings(u.gids)
    known = pb.NamespaceMode.DESCRIPTOR.values_by_number.get(u.mode)
    name = known.name if known is not None else str(u.mode)
    raise InvalidArgument(f"user namespace mode {name} is not "
                          "supported: only POD and NODE are")


def check_container_user_namespace(config: pb.ContainerConfig,
                                   sandbox: spec.SandboxConfig) -> None:
    """A container is in its pod's user namespace; when its request names one, it must be
    the pod's (the kubelet copies the pod's options)."""
    ns = config.linux.security_context.namespace_options
    if not ns.HasField("userns_options"):
        return
    if user_namespace(ns) != (sandbox.uid_mappings, sandbox.gid_mappings):
        raise InvalidArgument("the container's user namespace options differ from its pod's")


def resources(linux: pb.LinuxContainerResources) -> Resources:
    if any(h.limit for h in linux.hugepage_limits):
        raise Unimplemented("hugepage limits are not supported")
    if linux.unified:
        raise Unimplemented(f"unified cgroup v2 settings {sorted(linux.unified)} are not "
                            "supported")
    swap = linux.memory_swap_limit_in_bytes
    if swap and swap != linux.memory_limit_in_bytes:
        raise Unimplemented("a swap limit other than 'no swap' is not supported")
    return Resources(cpu_shares=linux.cpu_shares, cpu_quota=linux.cpu_quota,
                     cpu_period=linux.cpu_period, memory_limit=linux.memory_limit_in_bytes,
                     cpuset_cpus=linux.cpuset_cpus, cpuset_mems=linux.cpuset_mems)


def _seccomp(ctx: pb.LinuxContainerSecurityContext) -> spec.SeccompChoice:
    if ctx.HasField("seccomp"):
        if ctx.seccomp.profile_type not in SECCOMP:
            raise InvalidArgument(f"seccomp.profile_type {ctx.seccomp.profile_type} is not a "
                                  "known profile type")
        return spec.SeccompChoice(type=SECCOMP[ctx.seccomp.profile_type],
                                  localhost_path=ctx.seccomp.localhost_ref)
    path = ctx.seccomp_profile_path  # the deprecated string form
    if path in ("", "unconfined"):
        return spec.SeccompChoice(type="Unconfined")
    if path in ("runtime/default", "docker/default"):
        return spec.SeccompChoice(type="RuntimeDefault")
    if path.startswith("localhost/"):
        return spec.SeccompChoice(type="Localhost", localhost_path=path[len("localhost/"):])
    raise InvalidArgument(f"seccomp_profile_path {path!r} is not a known profile")


def security(ctx: pb.LinuxContainerSecurityContext) -> spec.SecurityConfig:
    if ctx.apparmor.profile_type == pb.SecurityProfile.Localhost or (
            ctx.apparmor_profile.startswith("localhost/")):
        raise Unimplemented("AppArmor profiles are not supported (no AppArmor on this node)")
    if ctx.selinux_options.ByteSize():
        raise Unimplemented("SELinux options are not supported (no SELinux on this node)")
    if ctx.namespace_options.pid == pb.TARGET:
        raise Unimplemented("sharing a target container's PID namespace is not supported")
    return spec.SecurityConfig(
        privileged=ctx.privileged, readonly_rootfs=ctx.readonly_rootfs,
        run_as_user=ctx.run_as_user.value if ctx.HasField("run_as_user") else None,
        run_as_username=ctx.run_as_username,
        run_as_group=ctx.run_as_group.value if ctx.HasField("run_as_group") else None,
        supplemental_groups=tuple(ctx.supplemental_groups),
        merge_image_groups=ctx.supplemental_groups_policy != pb.Strict,
        add_capabilities=tuple(ctx.capabilities.add_capabilities),
        drop_capabilities=tuple(ctx.capabilities.drop_capabilities),
        no_new_privs=ctx.no_new_privs, seccomp=_seccomp(ctx),
        masked_paths=tuple(ctx.masked_paths) or None,
        readonly_paths=tuple(ctx.readonly_paths) or None)


def _mount(i: int, mount: pb.Mount) -> spec.VolumeMount:
    where = f"mounts[{i}] ({mount.container_path})"
    if mount.image.image:
        raise Unimplemented(f"{where}: image volume mounts are not supported yet")
    if mount.uidMappings or mount.gidMappings:
        raise Unimplemented(f"{where}: ID-mapped mounts are not supported")
    if mount.mount_options:
        raise Unimplemented(f"{where}: extra mount options are not supported")
    return spec.VolumeMount(container_path=mount.container_path, host_path=mount.host_path,
                            readonly=mount.readonly, propagation=PROPAGATION[mount.propagation],
                            recursive_readonly=mount.recursive_read_only)


def container_config(config: pb.ContainerConfig) -> spec.ContainerConfig:
    if config.devices or config.CDI_devices:
        raise Unimplemented("device passthrough is not supported")
    env = []
    for kv in config.envs:
        try:
            env.append((kv.key, kv.value.decode()))
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"environment variable {kv.key} is not UTF-8") from exc
    linux = config.linux
    return spec.ContainerConfig(
        name=config.metadata.name, attempt=config.metadata.attempt, image=config.image.image,
        command=tuple(config.command), args=tuple(config.args),
        working_dir=config.working_dir, env=tuple(env),
        mounts=tuple(_mount(i, m) for i, m in enumerate(config.mounts)),
        labels=dict(config.labels), annotations=dict(config.annotations),
        log_path=config.log_path, stdin=config.stdin, stdin_once=config.stdin_once,
        tty=config.tty, resources=resources(linux.resources),
        security=security(linux.security_context),
        oom_score_adj=linux.resources.oom_score_adj,
        stop_signal=stop_signal_name(config.stop_signal))


def stop_signal_name(value: int) -> str:
    """CRI's Signal enum -> the signal's name ("" for RUNTIME_DEFAULT): SIGNAL_SIGUSR1 ->
    SIGUSR1, SIGNAL_SIGRTMINPLUS3 -> SIGRTMIN+3, SIGNAL_SIGRTMAXMINUS2 -> SIGRTMAX-2."""
    if value == pb.SIGNAL_RUNTIME_DEFAULT:
        return ""
    name = pb.Signal.Name(value).removeprefix("SIGNAL_")
    return name.replace("PLUS", "+").replace("MAXMINUS", "MAX-")


def stop_signal_enum(name: str) -> int:
    """The engine's stop signal name -> CRI's Signal enum ("" -> RUNTIME_DEFAULT)."""
    if not name:
        return pb.SIGNAL_RUNTIME_DEFAULT
    number = stopsignal.parse(name)
    if number == signal.SIGRTMIN:
        canonical = "SIGRTMIN"
    elif signal.SIGRTMIN < number <= signal.SIGRTMIN + 15:
        canonical = f"SIGRTMINPLUS{number - signal.SIGRTMIN}"
    elif signal.SIGRTMIN < number < signal.SIGRTMAX:
        canonical = f"SIGRTMAXMINUS{signal.SIGRTMAX - number}"
    elif number == signal.SIGRTMAX:
        canonical = "SIGRTMAX"
    else:
        canonical = signal.Signals(number).name
    return pb.Signal.Value(f"SIGNAL_{canonical}")


def sandbox_state(status: SandboxStatus) -> int:
    return pb.SANDBOX_READY if status is SandboxStatus.READY else pb.SANDBOX_NOTREADY


def container_state(state: ContainerState) -> int:
    return STATES[state.status]


def mount_to_pb(mount: spec.VolumeMount) -> pb.Mount:
    propagation = {v: k for k, v in PROPAGATION.items()}[mount.propagation]
    return pb.Mount(container_path=mount.container_path, host_path=mount.host_path,
                    readonly=mount.readonly, propagation=propagation,
                    recursive_read_only=mount.recursive_readonly)
