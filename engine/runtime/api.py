"""The engine's runtime API, the one the CRI layer calls. Thin: each verb lives in its own
module (sandbox, container, exec, stats); this class wires them to one context and does the
recovery pass on start.

    rt = Runtime(RuntimeOptions(run_root=Path("/run/kubelet-py/engine")), network=driver)
    sid = rt.run_sandbox(SandboxConfig(name=..., namespace=..., uid=...))
    cid = rt.create_container(sid, ContainerConfig(name="c"), rootfs=Rootfs(directory=...),
                              image=ImageConfig(cmd=("/bin/true",)))
    rt.start_container(cid); rt.container_status(cid).state.exit_code
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
import socket
import threading
import time
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from engine.cgroups.base import CgroupManager, CgroupStats, Resources
from engine.cgroups.detect import manager
from engine.errors import InvalidArgument, Unavailable
from engine.execdriver import mountattr, userns_probe
from engine.networkdriver.base import NetworkDriver
from engine.runtime import attach, container, exec, idmapped, portforward, sandbox, stats
from engine.runtime.attach import AttachSession
from engine.runtime.context import Ctx, RuntimeOptions
from engine.runtime.reaping import DeadMonitorReaper
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs, SandboxConfig
from engine.runtime.state import ContainerState
from engine.runtime.status import SandboxStatus, Status
from engine.runtime.store import ContainerRecord, SandboxRecord, Store

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class SandboxInfo:
    record: SandboxRecord
    status: SandboxStatus
    netns_path: str
    monitor_alive: bool


@dataclasses.dataclass(frozen=True)
class ContainerInfo:
    record: ContainerRecord
    state: ContainerState


F = TypeVar("F", bound=Callable[..., Any])


def _engine_errors(method: F) -> F:
    """The API raises only engine.errors: an OSError from the kernel becomes Unavailable."""
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except OSError as e:
            raise Unavailable(f"{method.__name__}: {e}") from e
    return typing.cast(F, wrapper)


def _public_methods_raise_engine_errors(cls: type[T]) -> type[T]:
    for name, value in list(vars(cls).items()):
        if callable(value) and not name.startswith("_"):
            setattr(cls, name, _engine_errors(value))
    return cls


@_public_methods_raise_engine_errors
class Runtime:
    def __init__(self, options: RuntimeOptions, *, network: NetworkDriver | None = None,
                 cgroups: CgroupManager | None = None,
                 clock: Callable[[], int] = time.time_ns, recover: bool = True) -> None:
        self.ctx = Ctx(options=options, store=Store(options.run_root),
                       cgroups=cgroups or manager(), network=network, clock=clock)
        # The CRI server calls from many threads: verbs on one sandbox (and its containers)
        # are serialized; different sandboxes proceed in parallel.
        self._guard = threading.Lock()  # the table of per-sandbox locks
        self._creating = threading.Lock()  # RunPodSandbox's name check and reservation
        self._locks: dict[str, threading.RLock] = {}
        self._reaper = DeadMonitorReaper(self.ctx, lock_for=self._lock)
        if recover:
            self.recover()

    def _lock(self, sid: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(sid, threading.RLock())

    def _sandbox_of(self, cid: str) -> str:
        return self.ctx.store.sandbox_of(cid)

    def close(self) -> None:
        """Release the change watch (inotify and pidfds). The Runtime is unusable after."""
        self.ctx.store.close()

    def generation(self) -> int:
        """Grows whenever a sandbox or container (record, state, monitor) changed: a view
        built from reads that began at generation G is current while this stays G."""
        return self.ctx.store.sync()

    # -- recovery ------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Reconcile disk with reality after a daemon restart: containers of a dead monitor
        are killed (via their cgroup) and recorded as exited. Returns the affected IDs."""
        affected = []
        self.ctx.store.sync()
        for sid in self.ctx.store.sandbox_ids():
            if self.ctx.store.monitor_alive(sid):
                continue
            for rec in self.ctx.store.containers(sid):
                cid = rec.id
                if self.ctx.store.state(rec).status is not Status.EXITED:
                    container.mark_monitor_died(self.ctx, rec)
                    affected.append(cid)
        if affected:
            log.warning("recovered %d containers whose monitor died", len(affected))
        return affected

    # -- sandboxes ------------------------------------------------------------------------
    def run_sandbox(self, config: SandboxConfig) -> str:
        with self._creating:  # the duplicate-name check and the new record, atomically
            rec = sandbox.reserve(self.ctx, config)
            lock = self._lock(rec.id)
            lock.acquire()  # before anyone can find the new sandbox to stop or remove it
        try:  # the rest runs beside other RunPodSandbox calls and other sandboxes' verbs
            sandbox.build(self.ctx, rec)
        except BaseException:
            with self._guard:
                self._locks.pop(rec.id, None)  # undone and removed
            raise
        finally:
            lock.release()
        return rec.id

    def stop_sandbox(self, sid: str) -> None:
        sid = self.resolve_sandbox(sid)
        with self._lock(sid):
            sandbox.stop(self.ctx, sid)

    def remove_sandbox(self, sid: str) -> None:
        sid = self.resolve_sandbox(sid)
        with self._lock(sid):
            rec = self.ctx.store.load_sandbox(sid)
            if rec.state == SandboxStatus.READY.value:
                sandbox.stop(self.ctx, sid)
            for cid in self.ctx.store.container_ids(sid):
                container.remove(self.ctx, cid)
            sandbox.remove(self.ctx, sid)
        with self._guard:
            self._locks.pop(sid, None)

    def sandbox_status(self, sid: str) -> SandboxInfo:
        self.ctx.store.sync()
        return self._sandbox_info(self.ctx.store.load_sandbox(self.resolve_sandbox(sid)))

    def _sandbox_info(self, rec: SandboxRecord) -> SandboxInfo:
        d = self.ctx.store.sandbox_dir(rec.id)
        alive = self.ctx.store.monitor_alive(rec.id)
        ready = rec.state == SandboxStatus.READY.value and alive
        return SandboxInfo(record=rec, status=SandboxStatus.READY if ready
                           else SandboxStatus.NOTREADY,
                           netns_path="" if rec.config.host_network else f"{d}/ns/net",
                           monitor_alive=alive)

    def list_sandboxes(self) -> list[SandboxInfo]:
        self.ctx.store.sync()
        return [self._sandbox_info(rec) for rec in self.ctx.store.sandboxes()]

    def resolve_sandbox(self, prefix: str) -> str:
        return self.ctx.store.resolve_sandbox(prefix)

    def sandbox_record(self, sid: str) -> SandboxRecord:
        """The sandbox's record (config, cgroup, IPs) without asking after its monitor: for
        callers that need what was asked for, not how the pod is doing."""
        return self.ctx.store.load_sandbox(self.resolve_sandbox(sid))

    # -- containers -----------------------------------------------------------------------
    def create_container(self, sid: str, config: ContainerConfig, *, rootfs: Rootfs,
                         image: ImageConfig) -> str:
        sid = self.resolve_sandbox(sid)
        with self._lock(sid):
            return container.create(self.ctx, sid, config, rootfs=rootfs, image=image)

    def start_container(self, cid: str) -> None:
        cid = self.resolve_container(cid)
        with self._lock(self._sandbox_of(cid)):
            container.start(self.ctx, cid)

    def stop_container(self, cid: str, *, timeout: float) -> None:
        """Not serialized with the sandbox's other verbs: a stop may wait `timeout`."""
        container.stop(self.ctx, self.resolve_container(cid), timeout=timeout)

    def remove_container(self, cid: str) -> None:
        cid = self.resolve_container(cid)
        with self._lock(self._sandbox_of(cid)):
            container.remove(self.ctx, cid)

    def wait_container(self, cid: str, *, timeout: float) -> ContainerState:
        self.ctx.store.sync()
        rec = self.ctx.store.load_container(self.resolve_container(cid))
        return container.wait_exited(self.ctx, rec, timeout)

    def container_status(self, cid: str) -> ContainerInfo:
        self.ctx.store.sync()
        return self._info(self.ctx.store.load_container(self.resolve_container(cid)))

    def _info(self, rec: ContainerRecord) -> ContainerInfo:
        state = self.ctx.store.known_state(rec)  # the callers sync() first
        if state.status is not Status.EXITED and not self.ctx.store.monitor_alive(
                rec.sandbox_id):
            state = self._reaper.state(rec, state)  # the kill runs on a thread
        return ContainerInfo(record=rec, state=state)

    def list_containers(self, sid: str | None = None) -> list[ContainerInfo]:
        self.ctx.store.sync()
        recs = self.ctx.store.containers(self.resolve_sandbox(sid) if sid else None)
        return [self._info(rec) for rec in recs]

    def update_container_resources(self, cid: str, resources: Resources) -> None:
        container.update(self.ctx, self.resolve_container(cid), resources)

    def reopen_container_log(self, cid: str) -> None:
        container.reopen_log(self.ctx, self.resolve_container(cid))

    def resolve_container(self, prefix: str) -> str:
        return self.ctx.store.resolve_container(prefix)

    def container_record(self, cid: str) -> ContainerRecord:
        """The container's record (config, spec, sandbox) without reading its state."""
        return self.ctx.store.load_container(self.resolve_container(cid))

    # -- exec, port-forward, stats ---------------------------------------------------------
    def exec_sync(self, cid: str, args: tuple[str, ...], *, timeout: float) -> exec.ExecResult:
        return exec.exec_sync(self.ctx, self.resolve_container(cid), args, timeout=timeout)

    def exec_stream(self, cid: str, args: tuple[str, ...], *, tty: bool) -> exec.ExecSession:
        return exec.exec_stream(self.ctx, self.resolve_container(cid), args, tty=tty)

    def attach(self, cid: str) -> AttachSession:
        return attach.attach(self.ctx, self.resolve_container(cid))

    def port_forward(self, sid: str, port: int) -> socket.socket:
        return portforward.port_forward(self.ctx, self.resolve_sandbox(sid), port)

    def container_stats(self, cid: str) -> stats.Stats:
        rec = self.ctx.store.load_container(self.resolve_container(cid))
        return stats.container_stats(self.ctx.cgroups, rec, now=self.ctx.clock())

    # -- features ---------------------------------------------------------------------------
    def recursive_readonly_mounts(self) -> bool:
        """Whether VolumeMount.recursive_readonly can work here (the kernel has
        mount_setattr; the native driver calls it, runc and crun take the "rro" option)."""
        return mountattr.supported()

    def user_namespaces(self, handler: str, *, storage: tuple[str, ...] = ()) -> bool:
        """Whether pods of `handler` can have their own user namespace here: the kernel makes
        one and ID-maps the run root and the image `storage` (checked for real, once), and
        the handler's runtime binary is installed."""
        try:
            _, binary = self.ctx.handler(handler)
        except InvalidArgument:
            return False  # a handler this runtime does not have supports nothing
        if binary and shutil.which(binary) is None:
            return False
        why = idmapped.unsearchable_parent(self.ctx.options.run_root)
        ok = not why
        if ok:
            ok, why = userns_probe.supported((str(self.ctx.options.run_root), *storage))
        if not ok:
            log.info("no pod user namespaces: %s", why)
        return ok

    def sandbox_stats(self, sid: str) -> CgroupStats:
        rec = self.ctx.store.load_sandbox(self.resolve_sandbox(sid))
        return self.ctx.cgroups.stats(rec.cgroup_path)
