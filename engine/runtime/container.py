"""Container verbs: create, start, stop, remove, update, reopen log."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import signal
import time
from pathlib import Path

from engine.cgroups.base import Resources
from engine.errors import (
    DeadlineExceeded,
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    Unavailable,
)
from engine.execdriver.codec import to_jsonable
from engine.runtime import build, idmapped, migration, stopsignal
from engine.runtime.context import Ctx
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs
from engine.runtime.state import REASON_MONITOR_DIED, ContainerState, write_state
from engine.runtime.status import SandboxStatus, Status
from engine.runtime.store import ContainerRecord, SandboxRecord
from engine.shim import protocol as P
from engine.shim.client import MonitorClient, monitor_alive
from engine.sys import linux


def _facts(ctx: Ctx, sandbox: SandboxRecord) -> build.SandboxFacts:
    return build.SandboxFacts(id=sandbox.id, dir=str(ctx.store.sandbox_dir(sandbox.id)),
                              config=sandbox.config, cgroup_path=sandbox.cgroup_path)


def _mount_rootfs(rootfs: Rootfs, target: Path) -> str:
    if rootfs.directory:
        if rootfs.mounts:
            raise InvalidArgument("rootfs: give a directory or mounts, not both")
        if not os.path.isdir(rootfs.directory):
            raise InvalidArgument(f"rootfs {rootfs.directory} is not a directory")
        return os.path.realpath(rootfs.directory)
    if not rootfs.mounts:
        raise InvalidArgument("rootfs: no directory and no mounts")
    target.mkdir(parents=True, exist_ok=True)
    for m in rootfs.mounts:
        if m.type == "bind" or "bind" in m.options or "rbind" in m.options:
            linux.mount(m.source, str(target), "", linux.MS_BIND | linux.MS_REC)
            if "ro" in m.options:
                linux.mount("", str(target), "", linux.MS_REMOUNT | linux.MS_BIND
                            | linux.MS_RDONLY)
        else:
            linux.mount(m.source, str(target), m.type, 0, ",".join(m.options))
    return str(target)


def _unmount_rootfs(rec: ContainerRecord, cdir: Path) -> None:
    if rec.rootfs_mounts:
        with contextlib.suppress(OSError):
            linux.umount2(str(cdir / "rootfs"), linux.MNT_DETACH)


def _image_volumes(image: ImageConfig, cdir: Path) -> dict[str, str]:
    out = {}
    for i, path in enumerate(sorted(image.volumes)):
        d = cdir / "volumes" / str(i)
        d.mkdir(parents=True, exist_ok=True)
        out[path] = str(d)
    return out


def create(ctx: Ctx, sid: str, config: ContainerConfig, *, rootfs: Rootfs,
           image: ImageConfig) -> str:
    with migration.primed():  # its init joins its cgroup (engine.runtime.migration)
        return _create(ctx, sid, config, rootfs=rootfs, image=image)


def _create(ctx: Ctx, sid: str, config: ContainerConfig, *, rootfs: Rootfs,
            image: ImageConfig) -> str:
    sandbox = ctx.store.load_sandbox(sid)
    if sandbox.state != SandboxStatus.READY.value:
        raise FailedPrecondition(f"sandbox {sid} is not ready")
    if not config.name:
        raise InvalidArgument("container metadata needs a name")
    stopsignal.resolve(requested=config.stop_signal, image=image.stop_signal)  # valid?
    for other in ctx.store.container_ids(sid):
        oc = ctx.store.load_container(other).config
        if (oc.name, oc.attempt) == (config.name, config.attempt):
            raise FailedPrecondition(f"container {config.name} attempt {config.attempt} "
                                     f"already exists in sandbox {sid} as {other}")
    cid = secrets.token_hex(32)
    cdir = ctx.store.container_dir(sid, cid)
    cdir.mkdir(parents=True)
    mounted = False
    userns_path = str(ctx.store.sandbox_dir(sid) / "ns" / "user") \
        if sandbox.config.user_namespace else ""
    try:
        if userns_path:  # every mount under cdir: released by idmapped.release
            mounted = True
            idmapped.check_searchable(cdir, stop=ctx.options.run_root)
            root = idmapped.mount_rootfs(
                rootfs, cdir / "rootfs", userns_path=userns_path,
                scratch=ctx.options.run_root / idmapped.IDMAP_DIR / cid[:16],
                uids=sandbox.config.uid_mappings, gids=sandbox.config.gid_mappings)
        else:
            root = _mount_rootfs(rootfs, cdir / "rootfs")
            mounted = bool(rootfs.mounts)
        spec = build.init_spec(cid, sandbox=_facts(ctx, sandbox), config=config, image=image,
                               rootfs=root, image_volumes=_image_volumes(image, cdir))
        if userns_path:
            spec = idmapped.map_mounts(spec, cdir, userns_path=userns_path)
        log_dir = sandbox.config.log_directory
        log_path = os.path.join(log_dir, config.log_path) if log_dir and config.log_path \
            else str(cdir / "container.log")
        rec = ContainerRecord(id=cid, sandbox_id=sid, config=config, image=image, spec=spec,
                              log_path=log_path, created_at=ctx.clock(),
                              rootfs_mounts=rootfs.mounts)
        ctx.store.save_container(rec)
        driver, binary = sandbox.driver, sandbox.runtime_binary
        meta = P.MonitorContainer(id=cid, driver=driver, log_path=log_path,
                                  runtime_binary=binary, tty=config.tty, stdin=config.stdin,
                                  stdin_once=config.stdin_once)
        MonitorClient(ctx.store.sandbox_dir(sid), timeout=ctx.options.create_timeout).call(
            "create", container=to_jsonable(meta), spec=to_jsonable(spec))
    except BaseException:
        if userns_path:
            idmapped.release(cdir)
        elif mounted:
            with contextlib.suppress(OSError):
                linux.umount2(str(cdir / "rootfs"), linux.MNT_DETACH)
        ctx.store.remove_container_dir(sid, cid)
        raise
    return cid


def start(ctx: Ctx, cid: str) -> None:
    rec = ctx.store.load_container(cid)
    state = ctx.store.state(rec)
    if not state.status.can_start():
        raise FailedPrecondition(f"container {cid} is {state.status.value}; cannot start")
    MonitorClient(ctx.store.sandbox_dir(rec.sandbox_id),
                  timeout=ctx.options.create_timeout).call("start", id=cid)


def _signal(ctx: Ctx, rec: ContainerRecord, sig: int) -> None:
    d = ctx.store.sandbox_dir(rec.sandbox_id)
    try:
        MonitorClient(d).call("kill", id=rec.id, signal=sig)
    except Unavailable:
        mark_monitor_died(ctx, rec)


def wait_exited(ctx: Ctx, rec: ContainerRecord, timeout: float) -> ContainerState:
    deadline = time.monotonic() + timeout
    while True:
        state = ctx.store.state(rec)
        if state.status is Status.EXITED:
            return state
        if not monitor_alive(ctx.store.sandbox_dir(rec.sandbox_id)):
            return mark_monitor_died(ctx, rec)
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(f"container {rec.id} did not exit within {timeout}s")
        time.sleep(0.01)


def stop(ctx: Ctx, cid: str, *, timeout: float) -> None:
    """The stop signal (the request's, the image's, or SIGTERM), then SIGKILL after `timeout`
    seconds. Stopping a stopped container is a no-op."""
    rec = ctx.store.load_container(cid)
    state = ctx.store.state(rec)
    if not state.status.can_kill():
        return
    if timeout > 0 and state.status is Status.RUNNING:
        _signal(ctx, rec, stopsignal.resolve(requested=rec.config.stop_signal,
                                             image=rec.image.stop_signal))
        with contextlib.suppress(DeadlineExceeded):
            wait_exited(ctx, rec, timeout)
            return
    _signal(ctx, rec, signal.SIGKILL)
    wait_exited(ctx, rec, 30)


def remove(ctx: Ctx, cid: str) -> None:
    rec = ctx.store.load_container(cid)
    state = ctx.store.state(rec)
    if state.status is Status.RUNNING:
        raise FailedPrecondition(f"container {cid} is running; stop it first")
    d = ctx.store.sandbox_dir(rec.sandbox_id)
    if monitor_alive(d):
        with contextlib.suppress(EngineError):
            MonitorClient(d).call("delete", id=cid)
    if ctx.cgroups.exists(rec.spec.cgroup_path):
        ctx.cgroups.destroy(rec.spec.cgroup_path)
    cdir = ctx.store.container_dir(rec.sandbox_id, cid)
    _unmount_rootfs(rec, cdir)
    if rec.spec.uid_mappings:
        idmapped.release(cdir)
    ctx.store.remove_container_dir(rec.sandbox_id, cid)


def update(ctx: Ctx, cid: str, resources: Resources) -> ContainerRecord:
    rec = ctx.store.load_container(cid)
    if not ctx.store.state(rec).status.can_kill():
        raise FailedPrecondition(f"container {cid} is not running")
    ctx.cgroups.update(rec.spec.cgroup_path, resources)
    new = dataclasses.replace(rec, spec=dataclasses.replace(rec.spec, resources=resources))
    ctx.store.save_container(new)
    return new


def reopen_log(ctx: Ctx, cid: str) -> None:
    rec = ctx.store.load_container(cid)
    if ctx.store.state(rec).status is not Status.RUNNING:
        raise FailedPrecondition(f"container {cid} is not running")
    MonitorClient(ctx.store.sandbox_dir(rec.sandbox_id)).call("reopen_log", id=cid)


def monitor_died_state(state: ContainerState, *, now: int) -> ContainerState:
    """What a container whose monitor died is: exited, killed (137), and why."""
    return ContainerState(status=Status.EXITED, pid=state.pid, created_at=state.created_at,
                          started_at=state.started_at, finished_at=now, exit_code=137,
                          reason=REASON_MONITOR_DIED,
                          message="the pod monitor died; the container was killed")


def mark_monitor_died(ctx: Ctx, rec: ContainerRecord, *,
                      dead: ContainerState | None = None) -> ContainerState:
    """The monitor is gone: kill what is left in the container's cgroup and record why
    (`dead`: the state already reported for it, see engine/runtime/reaping.py)."""
    if ctx.cgroups.exists(rec.spec.cgroup_path):
        ctx.cgroups.destroy(rec.spec.cgroup_path)
    state = ctx.store.state(rec)
    if state.status is Status.EXITED:
        return state
    new = dead or monitor_died_state(state, now=ctx.clock())
    write_state(P.state_path(ctx.store.sandbox_dir(rec.sandbox_id), rec.id), new)
    return new
