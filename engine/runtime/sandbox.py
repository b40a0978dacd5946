"""Sandbox verbs: run, stop, remove. A sandbox = a run dir, namespaces bind-mounted under
<dir>/ns (made by the nsexec helper), a /dev/shm tmpfs, a pod cgroup, a monitor, a network."""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import time
from pathlib import Path

from engine.cgroups.base import Resources
from engine.errors import EngineError, FailedPrecondition, InvalidArgument, Unavailable
from engine.execdriver import userns
from engine.execdriver.codec import to_jsonable
from engine.networkdriver.base import PodNetworkRequest
from engine.runtime import files, migration, netns
from engine.runtime.background import Background
from engine.runtime.context import Ctx
from engine.runtime.spec import SandboxConfig
from engine.runtime.status import SandboxStatus
from engine.runtime.store import SandboxRecord
from engine.shim import protocol as P
from engine.shim.client import MonitorClient, monitor_alive
from engine.shim.spawner import spawner_for
from engine.sys import linux

log = logging.getLogger(__name__)


def network_request(rec: SandboxRecord, sandbox_dir: Path) -> PodNetworkRequest:
    c = rec.config
    return PodNetworkRequest(sandbox_id=rec.id, netns_path=str(sandbox_dir / "ns" / "net"),
                             pod_name=c.name, pod_namespace=c.namespace, pod_uid=c.uid,
                             port_mappings=c.port_mappings, annotations=dict(c.annotations))


# Namespaced sysctls a pod may set (the kubelet's "safe" and "unsafe" namespaced groups).
NAMESPACED_SYSCTLS = (("kernel.shm", "ipc"), ("kernel.msg", "ipc"), ("kernel.sem", "ipc"),
                      ("fs.mqueue.", "ipc"), ("net.", "net"))


def check_sysctls(config: SandboxConfig) -> None:
    for key in config.sysctls:
        ns = next((n for prefix, n in NAMESPACED_SYSCTLS if key.startswith(prefix)), None)
        if ns is None:
            raise InvalidArgument(f"sysctl {key} is not namespaced; a pod may not set it")
        if (ns == "net" and config.host_network) or (ns == "ipc" and config.host_ipc):
            raise InvalidArgument(f"sysctl {key} would change the host's {ns} namespace")


def check_user_namespace(config: SandboxConfig) -> None:
    """A pod in its own user namespace owns all its namespaces: none may be the host's
    (the kernel would not let its root configure them), and it cannot be privileged."""
    userns.validate(config.uid_mappings, config.gid_mappings)
    shared = [name for name, host in (("network", config.host_network),
                                      ("PID", config.host_pid), ("IPC", config.host_ipc))
              if host]
    if shared:
        raise InvalidArgument("a pod in a user namespace cannot use the host's "
                              f"{', '.join(shared)} namespace")
    if config.privileged:
        raise InvalidArgument("a pod in a user namespace cannot be privileged")


def _net_made_here(config: SandboxConfig) -> bool:
    """Whether the daemon makes the pod's network namespace (engine.runtime.netns): every
    pod with one, except those in their own user namespace (which must own it)."""
    return not config.host_network and not config.user_namespace


def _make_namespaces(d: Path, config: SandboxConfig, cgroup: str) -> None:
    net_made = _net_made_here(config)
    MonitorClient(d).call("namespaces", hostname="" if config.host_network else config.hostname,
                          sysctls={k: v for k, v in config.sysctls.items()
                                   if not (net_made and k.startswith("net."))},
                          share_pid=config.share_pid, net_made=net_made,
                          cgroup_path=cgroup, uid_mappings=to_jsonable(config.uid_mappings),
                          gid_mappings=to_jsonable(config.gid_mappings))


def shutdown_monitor(d: Path, *, timeout: float = 10.0) -> None:
    """Ask the monitor to kill its containers and exit; wait until it is gone (SIGKILL it
    when it does not go)."""
    if not monitor_alive(d):
        return
    pid = int((d / P.PIDFILE).read_text())
    with contextlib.suppress(Unavailable):
        MonitorClient(d).call("shutdown")
    deadline = time.monotonic() + timeout
    while monitor_alive(d):
        if time.monotonic() > deadline:
            if _serves_other_pods(d, pid):
                # a shared monitor process (engine.shim.monitor): killing it would take its
                # other pods; the caller kills this pod's processes through its cgroup
                log.warning("monitor %d did not let sandbox %s go; left running for its "
                            "other pods", pid, d.name)
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.005)


def _serves_other_pods(d: Path, pid: int) -> bool:
    """Whether monitor process `pid` also serves a sandbox other than `d`."""
    for other in d.parent.iterdir():
        if other != d:
            with contextlib.suppress(OSError, ValueError):
                if int((other / P.PIDFILE).read_text()) == pid:
                    return True
    return False


def mounts_under(d: Path) -> list[str]:
    """Mount points below `d` in our mount namespace, deepest first."""
    prefix = str(d) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True)


def _release(d: Path) -> None:
    """Detach every mount left under the sandbox dir: namespaces, shm, container rootfs."""
    for point in mounts_under(d):
        with contextlib.suppress(OSError):
            linux.umount2(point, linux.MNT_DETACH)


def reserve(ctx: Ctx, config: SandboxConfig) -> SandboxRecord:
    """Check the request, then claim its name: a new dir and a NOTREADY record, which the
    duplicate check of any later call sees. The caller makes that atomic (Runtime holds a
    lock) and then calls build()."""
    if not (config.name and config.namespace and config.uid):
        raise InvalidArgument("sandbox metadata needs name, namespace and uid")
    if config.share_pid and config.host_pid:
        raise InvalidArgument("a pod cannot both share a PID namespace and use the host's")
    driver, binary = ctx.handler(config.runtime_handler)
    check_sysctls(config)
    if config.user_namespace:
        check_user_namespace(config)
    for sid in ctx.store.sandbox_ids():
        other = ctx.store.load_sandbox(sid).config
        if (other.name, other.namespace, other.uid, other.attempt) == (
                config.name, config.namespace, config.uid, config.attempt):
            raise FailedPrecondition(f"sandbox {config.namespace}/{config.name} attempt "
                                     f"{config.attempt} already exists as {sid}")
    sid = secrets.token_hex(32)
    d = ctx.store.sandbox_dir(sid)
    d.mkdir(parents=True)
    cgroup = f"{config.cgroup_parent.strip('/') or ctx.options.cgroup_root}/kpy-{sid[:16]}"
    rec = SandboxRecord(id=sid, config=config, created_at=ctx.clock(), cgroup_path=cgroup,
                        driver=driver, runtime_binary=binary,
                        state=SandboxStatus.NOTREADY.value)
    try:
        ctx.store.save_sandbox(rec)
    except BaseException:
        ctx.store.remove_sandbox_dir(sid)
        raise
    return rec


def build(ctx: Ctx, rec: SandboxRecord) -> None:
    """Make everything of the reserved sandbox `rec` and mark it READY; on failure, undo it
    all (record and dir included)."""
    # a process of the pod (the shared PID namespace's holder, the user namespace's) will
    # join the pod cgroup: engine.runtime.migration
    joins = rec.config.share_pid or rec.config.user_namespace
    with migration.primed() if joins else contextlib.nullcontext():
        _build(ctx, rec, ctx.store.sandbox_dir(rec.id))


def _build(ctx: Ctx, rec: SandboxRecord, d: Path) -> None:
    """Make everything of the new sandbox `rec`; on failure, undo it all."""
    config = rec.config
    spawn: Background[int] | None = None
    cgroup: Background[None] | None = None
    network: Background[tuple[str, ...]] | None = None
    try:
        (d / "ns").mkdir()
        attach = ctx.network is not None and not config.host_network
        if attach and ctx.network is not None:
            ready, reason = ctx.network.ready()
            if not ready:
                raise Unavailable(f"pod network is not ready: {reason}")
        # the monitor (engine.shim.monitor) is spawned while the rest is made here
        spawner = spawner_for(ctx.options.run_root, owner=ctx)
        spawn = Background(lambda: spawner.spawn(
            d, pods_per_monitor=ctx.options.pods_per_monitor), name=f"spawn-{rec.id[:12]}")
        cgroup = Background(lambda: ctx.cgroups.create(rec.cgroup_path, Resources()),
                            name=f"cgroup-{rec.id[:12]}")  # ~5 ms of mkdirs on cgroup v1
        if _net_made_here(config):
            netns.make(d / "ns" / "net", sysctls={k: v for k, v in config.sysctls.items()
                                                  if k.startswith("net.")})
            if attach:  # CNI ADD meanwhile the monitor makes the other namespaces
                network = Background(lambda: _attach(ctx, rec, d),
                                     name=f"cni-{rec.id[:12]}")
        (d / "shm").mkdir()
        linux.mount("shm", str(d / "shm"), "tmpfs", linux.MS_NOSUID | linux.MS_NODEV
                    | linux.MS_NOEXEC, "mode=1777,size=65536k")
        cgroup.result()
        spawn.result()
        _make_namespaces(d, config, rec.cgroup_path)
        ips: tuple[str, ...] = ()
        if network is not None:
            ips = network.result()
        elif attach:
            ips = _attach(ctx, rec, d)
        files.write_sandbox_files(d, hostname=config.hostname, ips=ips, dns=config.dns)
        ctx.store.save_sandbox(SandboxRecord(**{
            **rec.__dict__, "ips": ips, "state": SandboxStatus.READY.value,
            "network_attached": bool(ips)}))
    except BaseException:
        for job in (spawn, cgroup, network):  # all ended (a monitor up, an ADD done)
            if job is not None:               # before the teardown undoes them
                job.wait()
        _teardown(ctx, rec)
        raise


def _attach(ctx: Ctx, rec: SandboxRecord, d: Path) -> tuple[str, ...]:
    assert ctx.network is not None
    return ctx.network.setup(network_request(rec, d)).ips


def _teardown(ctx: Ctx, rec: SandboxRecord) -> None:
    """Undo everything run() may have made; each step tolerates "already gone"."""
    d = ctx.store.sandbox_dir(rec.id)
    with contextlib.suppress(EngineError):
        shutdown_monitor(d)
    if ctx.network is not None and not rec.config.host_network and \
            not rec.network_released and (d / "ns" / "net").exists():
        try:
            ctx.network.teardown(network_request(rec, d))
        except EngineError:
            log.exception("network teardown of sandbox %s", rec.id)
    _release(d)
    if ctx.cgroups.exists(rec.cgroup_path):
        ctx.cgroups.destroy(rec.cgroup_path)
    ctx.store.remove_sandbox_dir(rec.id)


def stop(ctx: Ctx, sid: str) -> None:
    """Kill every container, shut the monitor down, detach the network. Idempotent."""
    rec = ctx.store.load_sandbox(sid)
    d = ctx.store.sandbox_dir(sid)
    shutdown_monitor(d)
    # its monitor process may live on for other pods (engine.shim.monitor): no pidfd exit
    # will say this pod's monitor is gone, so drop the kept answer (read again: gone)
    ctx.store.live.forget_sandbox(sid)
    if ctx.cgroups.exists(rec.cgroup_path):
        for pid in ctx.cgroups.procs(rec.cgroup_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
    if ctx.network is not None and not rec.config.host_network and rec.network_attached:
        ctx.network.teardown(network_request(rec, d))
    ctx.store.save_sandbox(SandboxRecord(**{**rec.__dict__, "network_attached": False,
                                            "network_released": True,
                                            "state": SandboxStatus.NOTREADY.value}))


def remove(ctx: Ctx, sid: str) -> None:
    rec = ctx.store.load_sandbox(sid)
    if rec.state == SandboxStatus.READY.value:
        stop(ctx, sid)
        rec = ctx.store.load_sandbox(sid)  # what stop() released is not released twice
    _teardown(ctx, rec)

