"""ContainerConfig + ImageConfig + sandbox -> InitSpec: every merge and default in one place.

Pure (reads only the rootfs's /etc/passwd, /etc/group and the seccomp profile file), so the
whole policy is unit-tested without root.
"""
from __future__ import annotations

import dataclasses
import os

from engine.errors import InvalidArgument
from engine.execdriver import seccomp, userns
from engine.execdriver.mountopts import secure_target
from engine.execdriver.spec import (
    DEFAULT_DEVICES,
    Capabilities,
    InitSpec,
    MountPoint,
    Namespace,
    Seccomp,
    User,
)
from engine.runtime import users
from engine.runtime.spec import ContainerConfig, ImageConfig, SandboxConfig, SecurityConfig
from engine.sys import caps

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_MASKED = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                  "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                  "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                  "/sys/devices/virtual/powercap")
DEFAULT_READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
PROPAGATIONS = {"private": "rprivate", "rprivate": "rprivate", "rslave": "rslave",
                "slave": "rslave", "rshared": "rshared", "shared": "rshared"}


@dataclasses.dataclass(frozen=True)
class SandboxFacts:
    """What a container needs to know about its sandbox."""

    id: str
    dir: str  # the sandbox's run dir: ns/, hosts, resolv.conf, hostname, shm/
    config: SandboxConfig
    cgroup_path: str


def command(config: ContainerConfig, image: ImageConfig) -> tuple[str, ...]:
    if config.command:
        args = config.command + config.args
    elif config.args:
        args = image.entrypoint + config.args
    else:
        args = image.entrypoint + image.cmd
    if not args:
        raise InvalidArgument(f"container {config.name}: no command specified "
                              "(neither the request nor the image config has one)")
    return args


def environment(config: ContainerConfig, image: ImageConfig, *, hostname: str,
                home: str) -> tuple[str, ...]:
    env: dict[str, str] = {}
    for item in (DEFAULT_PATH_ENV, *image.env):
        k, _, v = item.partition("=")
        env[k] = v
    if hostname:
        env["HOSTNAME"] = hostname
    for k, v in config.env:
        env[k] = v
    env.setdefault("HOME", home)
    return tuple(f"{k}={v}" for k, v in env.items())


def capabilities(sec: SecurityConfig) -> Capabilities:
    available = caps.current_bounding()
    if sec.privileged:
        names = available
    else:
        drop = {d.upper() for d in sec.drop_capabilities}
        add = {a.upper() for a in sec.add_capabilities}
        if "ALL" in drop:
            chosen: set[str] = set()
        else:
            chosen = {c for c in caps.DEFAULT_CAPABILITIES
                      if c not in {caps.normalize(d) for d in drop}}
        if "ALL" in add:
            chosen |= set(available)
        else:
            chosen |= {caps.normalize(a) for a in add}
        missing = sorted(chosen - set(available))
        if missing:
            raise InvalidArgument(f"capabilities {missing} are not available on this node")
        names = tuple(sorted(chosen, key=lambda n: caps.CAPABILITIES[n]))
    return Capabilities(bounding=names, effective=names, permitted=names)


def seccomp_profile(sec: SecurityConfig) -> Seccomp | None:
    if sec.privileged or sec.seccomp.type == "Unconfined":
        return None
    if sec.seccomp.type == "RuntimeDefault":
        return seccomp.runtime_default(capabilities(sec).bounding)
    if sec.seccomp.type == "Localhost":
        return seccomp.load_localhost(sec.seccomp.localhost_path)
    raise InvalidArgument(f"unknown seccomp profile type {sec.seccomp.type!r}")


def mounts(sandbox: SandboxFacts, config: ContainerConfig, *, image_volumes: dict[str, str],
           privileged: bool) -> tuple[MountPoint, ...]:
    sc = sandbox.config
    out = [MountPoint("/proc", "proc", "proc", ("nosuid", "noexec", "nodev"))]
    if privileged:
        out.append(MountPoint("/dev", "bind", "/dev", ("rbind", "nosuid")))
    else:
        out += [MountPoint("/dev", "tmpfs", "tmpfs",
                           ("nosuid", "strictatime", "mode=755", "size=65536k")),
                MountPoint("/dev/pts", "devpts", "devpts",
                           ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                            "gid=5"))]
    out.append(MountPoint("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")))
    shm = "/dev/shm" if sc.host_ipc else os.path.join(sandbox.dir, "shm")
    out.append(MountPoint("/dev/shm", "bind", shm, ("rbind", "nosuid", "nodev", "noexec")))
    out.append(MountPoint("/sys", "sysfs", "sysfs",
                          ("nosuid", "noexec", "nodev", "rw" if privileged else "ro")))
    for name in ("hostname", "resolv.conf", "hosts"):
        if not any(m.container_path == f"/etc/{name}" for m in config.mounts):
            out.append(MountPoint(f"/etc/{name}", "bind", os.path.join(sandbox.dir, name),
                                  ("rbind", "rprivate")))
    for path, source in sorted(image_volumes.items()):
        if not any(m.container_path == path for m in config.mounts):
            out.append(MountPoint(path, "bind", source, ("rbind", "rprivate")))
    for v in sorted(config.mounts, key=lambda m: m.container_path.count("/")):
        if not os.path.isabs(v.container_path):
            raise InvalidArgument(f"mount target {v.container_path!r} must be absolute")
        if not os.path.exists(v.host_path):
            raise InvalidArgument(f"mount source {v.host_path} does not exist")
        if v.propagation not in PROPAGATIONS:
            raise InvalidArgument(f"unknown mount propagation {v.propagation!r}")
        if v.recursive_readonly and not (v.readonly and v.propagation in ("private",
                                                                          "rprivate")):
            raise InvalidArgument(f"mount {v.container_path}: a recursive read-only mount "
                                  "must be read-only with private propagation")
        opts = ("rbind", PROPAGATIONS[v.propagation], *(("ro",) if v.readonly else ()),
                *(("rro",) if v.recursive_readonly else ()))
        out.append(MountPoint(v.container_path, "bind", v.host_path, opts))
    return tuple(out)


def namespaces(sandbox: SandboxFacts) -> tuple[Namespace, ...]:
    sc = sandbox.config
    # the user namespace first: the others are owned by it (runc and nsexec join in order)
    ns = [Namespace("user", os.path.join(sandbox.dir, "ns", "user"))] \
        if sc.user_namespace else []
    ns.append(Namespace("mnt"))
    if sc.share_pid:
        ns.append(Namespace("pid", os.path.join(sandbox.dir, "ns", "pid")))
    elif not sc.host_pid:
        ns.append(Namespace("pid"))
    for t, host in (("net", sc.host_network), ("ipc", sc.host_ipc), ("uts", sc.host_network)):
        if not host:
            ns.append(Namespace(t, os.path.join(sandbox.dir, "ns", t)))
    return tuple(ns)


def check_ids_mapped(user: User, sandbox: SandboxConfig) -> None:
    """In a pod user namespace, the container's uid and gids must be inside its maps (the
    kernel would refuse the setuid at start, with a less helpful message)."""
    if not sandbox.user_namespace:
        return
    if userns.to_host(sandbox.uid_mappings, user.uid) is None:
        raise InvalidArgument(f"uid {user.uid} is not mapped in the pod's user namespace")
    for gid in (user.gid, *user.additional_gids):
        if userns.to_host(sandbox.gid_mappings, gid) is None:
            raise InvalidArgument(f"gid {gid} is not mapped in the pod's user namespace")


def init_spec(cid: str, *, sandbox: SandboxFacts, config: ContainerConfig, image: ImageConfig,
              rootfs: str, image_volumes: dict[str, str]) -> InitSpec:
    sec = config.security
    privileged = sec.privileged
    if privileged and not sandbox.config.privileged:
        raise InvalidArgument("a privileged container needs a privileged sandbox")
    if sec.run_as_user is not None:
        user = users.resolve(rootfs, str(sec.run_as_user), group=sec.run_as_group,
                             supplemental=sec.supplemental_groups,
                             merge_image_groups=sec.merge_image_groups)
    else:
        user = users.resolve(rootfs, sec.run_as_username or image.user, group=sec.run_as_group,
                             supplemental=sec.supplemental_groups,
                             merge_image_groups=sec.merge_image_groups)
    check_ids_mapped(user, sandbox.config)
    cwd = config.working_dir or image.workdir or "/"
    secure_target(rootfs, cwd)  # refuses a working dir resolving outside the rootfs
    hostname = sandbox.config.hostname
    mount_points = mounts(sandbox, config, image_volumes=image_volumes, privileged=privileged)
    for m in mount_points:
        secure_target(rootfs, m.destination)  # refuses targets that are symlinks out
    return InitSpec(
        id=cid, rootfs=rootfs, args=command(config, image),
        env=environment(config, image, hostname=hostname, home=users.home_of(rootfs, user.uid)),
        cwd=cwd, user=user, hostname=hostname, readonly_rootfs=sec.readonly_rootfs,
        terminal=config.tty, namespaces=namespaces(sandbox),
        mounts=mount_points,
        devices=() if privileged else DEFAULT_DEVICES,
        masked_paths=() if privileged else (
            DEFAULT_MASKED if sec.masked_paths is None else sec.masked_paths),
        readonly_paths=() if privileged else (
            DEFAULT_READONLY if sec.readonly_paths is None else sec.readonly_paths),
        capabilities=capabilities(sec), no_new_privileges=sec.no_new_privs,
        seccomp=seccomp_profile(sec), cgroup_path=f"{sandbox.cgroup_path}/{cid}",
        resources=config.resources, oom_score_adj=config.oom_score_adj, privileged=privileged,
        uid_mappings=sandbox.config.uid_mappings, gid_mappings=sandbox.config.gid_mappings,
    )
