"""SandboxPort and ContainerPort over the engine's Runtime and ImageService.

A container's root filesystem is a snapshot of its image taken by the image service under
a key derived from (sandbox, name, attempt), which the engine keeps unique within a
sandbox; so the CRI layer can release it on removal without keeping any state of its own.
"""
from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Sequence

from cri.api import runtime_pb2 as pb
from cri.server import engine_translate as tr
from cri.server.container_view import ContainerView, Entry, entry
from cri.server.ports import ExecResult, StatusWithInfo
from engine.errors import NotFound
from engine.execdriver.spec import User
from engine.images import ImageService
from engine.runtime.api import ContainerInfo, Runtime, SandboxInfo
from engine.runtime.spec import ImageConfig, Rootfs
from engine.runtime.state import ContainerState
from engine.runtime.status import Status

Publish = Callable[[str, str, int], None]  # (container ID, sandbox ID, ContainerEventType)


def rootfs_key(sandbox_id: str, name: str, attempt: int) -> str:
    return f"ctr-{sandbox_id}-{name}-{attempt}"


def _metadata(info: SandboxInfo) -> pb.PodSandboxMetadata:
    c = info.record.config
    return pb.PodSandboxMetadata(name=c.name, namespace=c.namespace, uid=c.uid,
                                 attempt=c.attempt)


def sandbox_status(info: SandboxInfo) -> pb.PodSandboxStatus:
    rec, c = info.record, info.record.config
    ns = pb.NamespaceOption(network=pb.NODE if c.host_network else pb.POD,
                            pid=pb.NODE if c.host_pid else (pb.POD if c.share_pid
                                                            else pb.CONTAINER),
                            ipc=pb.NODE if c.host_ipc else pb.POD)
    status = pb.PodSandboxStatus(
        id=rec.id, metadata=_metadata(info), state=tr.sandbox_state(info.status),  # type: ignore[arg-type]
        created_at=rec.created_at, labels=c.labels, annotations=c.annotations,
        runtime_handler=c.runtime_handler,
        linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(options=ns)))
    if rec.ips and not c.host_network:
        status.network.ip = rec.ips[0]
        status.network.additional_ips.extend(pb.PodIP(ip=ip) for ip in rec.ips[1:])
    return status


def container_status(info: ContainerInfo, *, image_id: str) -> pb.ContainerStatus:
    rec, state, c = info.record, info.state, info.record.config
    return pb.ContainerStatus(
        id=rec.id, metadata=pb.ContainerMetadata(name=c.name, attempt=c.attempt),
        state=tr.container_state(state),  # type: ignore[arg-type]
        created_at=rec.created_at, started_at=state.started_at,
        finished_at=state.finished_at, exit_code=state.exit_code,
        image=pb.ImageSpec(image=c.image), image_ref=image_id, image_id=image_id,
        reason=state.reason, message=state.message, labels=c.labels,
        annotations=c.annotations, mounts=[tr.mount_to_pb(m) for m in c.mounts],
        log_path=rec.log_path, user=user_of(rec.spec.user))


def user_of(user: User) -> pb.ContainerUser:
    """The identity the container's first process was started with."""
    return pb.ContainerUser(linux=pb.LinuxContainerUser(
        uid=user.uid, gid=user.gid, supplemental_groups=list(user.additional_gids)))


def image_id_of(images: ImageService, ref: str) -> str:
    image = images.status(ref)
    return "" if image is None else image.id


def entry_of(info: ContainerInfo, images: ImageService, *, image_id: str | None = None) -> Entry:
    if image_id is None:
        image_id = image_id_of(images, info.record.config.image)
    return entry(container_status(info, image_id=image_id),
                 sandbox_id=info.record.sandbox_id, pid=info.state.pid)


class Translator:
    """Engine containers to view entries, reusing the entry of a container whose state and
    image ID did not change (its record's CRI fields never change after creation), and
    looking each image reference up once per load."""

    def __init__(self, runtime: Runtime, images: ImageService) -> None:
        self._rt, self._images = runtime, images
        self._lock = threading.Lock()
        self._memo: dict[str, tuple[ContainerState, str, Entry]] = {}

    def _entry(self, info: ContainerInfo, image_ids: dict[str, str]) -> Entry:
        ref = info.record.config.image
        if ref not in image_ids:
            image_ids[ref] = image_id_of(self._images, ref)
        image_id, cid = image_ids[ref], info.record.id
        with self._lock:
            known = self._memo.get(cid)
        if known is not None and known[0] == info.state and known[1] == image_id:
            return known[2]
        e = entry_of(info, self._images, image_id=image_id)
        with self._lock:
            self._memo[cid] = (info.state, image_id, e)
        return e

    def load_all(self) -> list[Entry]:
        image_ids: dict[str, str] = {}
        out = [self._entry(info, image_ids) for info in self._rt.list_containers()]
        seen = {e.status.id for e in out}
        with self._lock:
            for cid in [c for c in self._memo if c not in seen]:
                del self._memo[cid]
        return out

    def load_one(self, container_id: str) -> Entry:
        return self._entry(self._rt.container_status(container_id), {})


def container_view(runtime: Runtime, images: ImageService, *,
                   max_age_s: float = 3.0) -> ContainerView:
    """The view the container RPCs read, loading through this runtime (see ContainerView)."""
    translator = Translator(runtime, images)
    return ContainerView(load_all=translator.load_all, load_one=translator.load_one,
                         max_age_s=max_age_s)


class EngineSandboxes:
    def __init__(self, runtime: Runtime, images: ImageService, *,
                 view: ContainerView) -> None:
        self._rt = runtime
        self._images = images
        self._view = view

    def ready(self) -> tuple[bool, str]:
        return True, ""

    def run_sandbox(self, config: pb.PodSandboxConfig, *, runtime_handler: str) -> str:
        return self._rt.run_sandbox(tr.sandbox_config(config, runtime_handler=runtime_handler))

    def stop_sandbox(self, sandbox_id: str) -> None:
        sandbox_id = self._rt.resolve_sandbox(sandbox_id)
        try:
            self._rt.stop_sandbox(sandbox_id)
        finally:  # even a failed stop may have stopped some of its containers
            self._view.invalidate_sandbox(sandbox_id)

    def remove_sandbox(self, sandbox_id: str) -> None:
        sandbox_id = self._rt.resolve_sandbox(sandbox_id)
        keys = [rootfs_key(sandbox_id, c.record.config.name, c.record.config.attempt)
                for c in self._rt.list_containers(sandbox_id)]
        try:
            self._rt.remove_sandbox(sandbox_id)
        finally:
            self._view.invalidate_sandbox(sandbox_id)
        for key in keys:
            with contextlib.suppress(NotFound):
                self._images.remove_rootfs(key)

    def sandbox_status(self, sandbox_id: str, *,
                       verbose: bool) -> StatusWithInfo[pb.PodSandboxStatus]:
        info = self._rt.sandbox_status(sandbox_id)
        extra = {}
        if verbose:
            extra["info"] = json.dumps({
                "netnsPath": info.netns_path, "monitorAlive": info.monitor_alive,
                "cgroupPath": info.record.cgroup_path, "driver": info.record.driver},
                sort_keys=True)
        return StatusWithInfo(sandbox_status(info), extra)

    def list_sandboxes(self) -> Sequence[pb.PodSandbox]:
        out = []
        for info in self._rt.list_sandboxes():
            c = info.record.config
            out.append(pb.PodSandbox(id=info.record.id, metadata=_metadata(info),
                                     state=tr.sandbox_state(info.status),  # type: ignore[arg-type]
                                     created_at=info.record.created_at, labels=c.labels,
                                     annotations=c.annotations,
                                     runtime_handler=c.runtime_handler))
        return out


class EngineContainers:
    def __init__(self, runtime: Runtime, images: ImageService, *, view: ContainerView,
                 publish: Publish | None = None) -> None:
        self._rt = runtime
        self._images = images
        self._view = view
        self._publish = publish or (lambda cid, sid, kind: None)

    def recursive_read_only_mounts(self) -> bool:
        return self._rt.recursive_readonly_mounts()

    def supplemental_groups_policy(self) -> bool:
        return True  # SecurityConfig.merge_image_groups; ContainerStatus.user is reported

    def create_container(self, sandbox_id: str, config: pb.ContainerConfig, *,
                         sandbox_config: pb.PodSandboxConfig) -> str:
        engine_config = tr.container_config(config)
        sandbox_id = self._rt.resolve_sandbox(sandbox_id)
        image = self._images.get(config.image.image)  # NotFound when not pulled
        key = rootfs_key(sandbox_id, engine_config.name, engine_config.attempt)
        mounts = self._images.create_rootfs(key, image.id)
        c = image.config
        try:
            cid = self._rt.create_container(
                sandbox_id, engine_config, rootfs=Rootfs(mounts=tuple(mounts)),
                image=ImageConfig(entrypoint=c.entrypoint, cmd=c.cmd, env=c.env,
                                  workdir=c.working_dir, user=c.user, volumes=c.volumes))
        except BaseException:
            self._images.remove_rootfs(key)
            raise
        self._view.invalidate(cid)
        self._publish(cid, sandbox_id, pb.CONTAINER_CREATED_EVENT)
        return cid

    def start_container(self, container_id: str) -> None:
        rec = self._rt.container_status(container_id).record
        try:
            self._rt.start_container(rec.id)
        finally:  # a failed start leaves the container exited
            self._view.invalidate(rec.id)
        self._publish(rec.id, rec.sandbox_id, pb.CONTAINER_STARTED_EVENT)

    def stop_container(self, container_id: str, *, timeout_s: int) -> None:
        rec = self._rt.container_status(container_id).record
        try:
            self._rt.stop_container(rec.id, timeout=float(timeout_s))
        finally:
            self._view.invalidate(rec.id)
        self._publish(rec.id, rec.sandbox_id, pb.CONTAINER_STOPPED_EVENT)

    def remove_container(self, container_id: str) -> None:
        """Removes a running container too, as the CRI asks: killed at once first."""
        info = self._rt.container_status(container_id)
        rec = info.record
        if info.state.status in (Status.CREATED, Status.RUNNING):
            try:
                self._rt.stop_container(rec.id, timeout=0.0)
            finally:
                self._view.invalidate(rec.id)
            self._publish(rec.id, rec.sandbox_id, pb.CONTAINER_STOPPED_EVENT)
        try:
            self._rt.remove_container(rec.id)
        except BaseException:
            self._view.invalidate(rec.id)
            raise
        self._view.forget(rec.id)
        with contextlib.suppress(NotFound):
            self._images.remove_rootfs(rootfs_key(rec.sandbox_id, rec.config.name,
                                                  rec.config.attempt))
        self._publish(rec.id, rec.sandbox_id, pb.CONTAINER_DELETED_EVENT)

    def container_status(self, container_id: str, *,
                         verbose: bool) -> StatusWithInfo[pb.ContainerStatus]:
        e = self._view.status(container_id)
        extra = {}
        if verbose:
            extra["info"] = json.dumps({"pid": e.pid, "sandboxID": e.sandbox_id},
                                       sort_keys=True)
        return StatusWithInfo(e.status, extra)

    def list_containers(self) -> Sequence[pb.Container]:
        return self._view.containers()

    def update_resources(self, container_id: str,
                         resources: pb.LinuxContainerResources) -> None:
        self._rt.update_container_resources(container_id, tr.resources(resources))

    def reopen_log(self, container_id: str) -> None:
        self._rt.reopen_container_log(container_id)

    def exec_sync(self, container_id: str, cmd: Sequence[str], *,
                  timeout_s: int) -> ExecResult:
        result = self._rt.exec_sync(container_id, tuple(cmd), timeout=float(timeout_s))
        return ExecResult(stdout=result.stdout, stderr=result.stderr,
                          exit_code=result.exit_code)
