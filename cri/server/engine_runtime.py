"""SandboxPort and ContainerPort over the engine's Runtime and ImageService.

A container's root filesystem is a snapshot of its image taken by the image service under
a key derived from (sandbox, name, attempt), which the engine keeps unique within a
sandbox; so the CRI layer can release it on removal without keeping any state of its own.
"""
from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Sequence

from cri.api import runtime_pb2 as pb
from cri.server import engine_translate as tr
from cri.server.container_view import ContainerView
from cri.server.ports import ExecResult, StatusWithInfo
from engine.errors import NotFound
from engine.execdriver.spec import IDMapping, User
from engine.images import ImageService
from engine.runtime.api import ContainerInfo, Runtime, SandboxInfo
from engine.runtime.spec import ImageConfig, Rootfs
from engine.runtime.status import SandboxStatus, Status
from engine.runtime.store import SandboxRecord

Publish = Callable[[str, str, int], None]  # (container ID, sandbox ID, ContainerEventType)


def rootfs_key(sandbox_id: str, name: str, attempt: int) -> str:
    return f"ctr-{sandbox_id}-{name}-{attempt}"


def _metadata(info: SandboxInfo) -> pb.PodSandboxMetadata:
    c = info.record.config
    return pb.PodSandboxMetadata(name=c.name, namespace=c.namespace, uid=c.uid,
                                 attempt=c.attempt)


def _pb_mappings(maps: Iterable[IDMapping]) -> list[pb.IDMapping]:
    return [pb.IDMapping(host_id=m.host_id, container_id=m.container_id, length=m.size)
            for m in maps]


def sandbox_status(info: SandboxInfo) -> pb.PodSandboxStatus:
    rec, c = info.record, info.record.config
    ns = pb.NamespaceOption(network=pb.NODE if c.host_network else pb.POD,
                            pid=pb.NODE if c.host_pid else (pb.POD if c.share_pid
                                                            else pb.CONTAINER),
                            ipc=pb.NODE if c.host_ipc else pb.POD,
                            userns_options=pb.UserNamespace(
                                mode=pb.POD if c.user_namespace else pb.NODE,
                                uids=_pb_mappings(c.uid_mappings),
                                gids=_pb_mappings(c.gid_mappings)))
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
        log_path=rec.log_path, user=user_of(rec.spec.user),
        stop_signal=tr.stop_signal_enum(c.stop_signal or rec.image.stop_signal))  # type: ignore[arg-type]


def user_of(user: User) -> pb.ContainerUser:
    """The identity the container's first process was started with."""
    return pb.ContainerUser(linux=pb.LinuxContainerUser(
        uid=user.uid, gid=user.gid, supplemental_groups=list(user.additional_gids)))


def image_id_of(images: ImageService, ref: str) -> str:
    image = images.status(ref)
    return "" if image is None else image.id


def container_view(runtime: Runtime, images: ImageService) -> ContainerView:
    """The view the container RPCs read, over this runtime (see ContainerView)."""
    return ContainerView(runtime, translate=lambda info, image_id: container_status(
        info, image_id=image_id), image_id_of=lambda ref: image_id_of(images, ref))


class EngineSandboxes:
    """Sandbox verbs. Like containerd, they publish container events for the sandbox itself
    (container_id = the sandbox's ID), so an evented PLEG hears of sandbox changes too."""

    def __init__(self, runtime: Runtime, images: ImageService, *,
                 publish: Publish | None = None) -> None:
        self._rt = runtime
        self._images = images
        self._publish = publish or (lambda cid, sid, kind: None)
        self._lock = threading.Lock()
        # Translations reused while the engine says nothing changed (see ContainerView):
        # sandbox ID -> (record, status, message); the listing with its generation.
        self._memo: dict[str, tuple[SandboxRecord, SandboxStatus, pb.PodSandbox]] = {}
        self._listing: tuple[int, tuple[pb.PodSandbox, ...]] | None = None

    def ready(self) -> tuple[bool, str]:
        return True, ""

    def run_sandbox(self, config: pb.PodSandboxConfig, *, runtime_handler: str) -> str:
        sid = self._rt.run_sandbox(tr.sandbox_config(config, runtime_handler=runtime_handler))
        self._publish(sid, sid, pb.CONTAINER_CREATED_EVENT)
        self._publish(sid, sid, pb.CONTAINER_STARTED_EVENT)
        return sid

    def stop_sandbox(self, sandbox_id: str) -> None:
        self._rt.stop_sandbox(sandbox_id)
        with contextlib.suppress(NotFound):  # stopping what is gone succeeds, says nothing
            sid = self._rt.resolve_sandbox(sandbox_id)
            self._publish(sid, sid, pb.CONTAINER_STOPPED_EVENT)

    def remove_sandbox(self, sandbox_id: str) -> None:
        sandbox_id = self._rt.resolve_sandbox(sandbox_id)
        keys = [rootfs_key(sandbox_id, c.record.config.name, c.record.config.attempt)
                for c in self._rt.list_containers(sandbox_id)]
        self._rt.remove_sandbox(sandbox_id)
        for key in keys:
            with contextlib.suppress(NotFound):
                self._images.remove_rootfs(key)
        self._publish(sandbox_id, sandbox_id, pb.CONTAINER_DELETED_EVENT)

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
        gen = self._rt.generation()  # before the reads: a change after it shows next time
        with self._lock:
            if self._listing is not None and self._listing[0] == gen:
                return self._listing[1]
        infos = self._rt.list_sandboxes()
        listing = tuple(self._pod_sandbox(info) for info in infos)
        with self._lock:
            present = {info.record.id for info in infos}
            for sid in [s for s in self._memo if s not in present]:
                del self._memo[sid]
            self._listing = (gen, listing)
        return listing

    def _pod_sandbox(self, info: SandboxInfo) -> pb.PodSandbox:
        rec, c = info.record, info.record.config
        with self._lock:
            known = self._memo.get(rec.id)
        if known is not None and known[0] is rec and known[1] is info.status:
            return known[2]
        item = pb.PodSandbox(id=rec.id, metadata=_metadata(info),
                             state=tr.sandbox_state(info.status),  # type: ignore[arg-type]
                             created_at=rec.created_at, labels=c.labels,
                             annotations=c.annotations, runtime_handler=c.runtime_handler)
        with self._lock:
            self._memo[rec.id] = (rec, info.status, item)
        return item


class EngineContainers:
    def __init__(self, runtime: Runtime, images: ImageService, *, view: ContainerView,
                 publish: Publish | None = None) -> None:
        self._rt = runtime
        self._images = images
        self._view = view
        self._publish = publish or (lambda cid, sid, kind: None)

    def recursive_read_only_mounts(self) -> bool:
        return self._rt.recursive_readonly_mounts()

    def user_namespaces(self, handler: str) -> bool:
        return self._rt.user_namespaces(handler, storage=(str(self._images.root),))

    def supplemental_groups_policy(self) -> bool:
        return True  # SecurityConfig.merge_image_groups; ContainerStatus.user is reported

    def create_container(self, sandbox_id: str, config: pb.ContainerConfig, *,
                         sandbox_config: pb.PodSandboxConfig) -> str:
        engine_config = tr.container_config(config)
        sandbox_id = self._rt.resolve_sandbox(sandbox_id)
        tr.check_container_user_namespace(config, self._rt.sandbox_record(sandbox_id).config)
        image = self._images.get(config.image.image)  # NotFound when not pulled
        key = rootfs_key(sandbox_id, engine_config.name, engine_config.attempt)
        mounts = self._images.create_rootfs(key, image.id)
        c = image.config
        try:
            cid = self._rt.create_container(
                sandbox_id, engine_config, rootfs=Rootfs(mounts=tuple(mounts)),
                image=ImageConfig(entrypoint=c.entrypoint, cmd=c.cmd, env=c.env,
                                  workdir=c.working_dir, user=c.user, volumes=c.volumes,
                                  stop_signal=c.stop_signal))
        except BaseException:
            self._images.remove_rootfs(key)
            raise
        self._view.pin_image(cid, image.id)
        self._publish(cid, sandbox_id, pb.CONTAINER_CREATED_EVENT)
        return cid

    def start_container(self, container_id: str) -> None:
        rec = self._rt.container_record(container_id)
        self._rt.start_container(rec.id)
        self._publish(rec.id, rec.sandbox_id, pb.CONTAINER_STARTED_EVENT)

    def stop_container(self, container_id: str, *, timeout_s: int) -> None:
        rec = self._rt.container_record(container_id)
        self._rt.stop_container(rec.id, timeout=float(timeout_s))
        self._publish(rec.id, rec.sandbox_id, pb.CONTAINER_STOPPED_EVENT)

    def remove_container(self, container_id: str) -> None:
        """Removes a running container too, as the CRI asks: killed at once first."""
        info = self._rt.container_status(container_id)
        rec = info.record
        if info.state.status in (Status.CREATED, Status.RUNNING):
            self._rt.stop_container(rec.id, timeout=0.0)
            self._publish(rec.id, rec.sandbox_id, pb.CONTAINER_STOPPED_EVENT)
        self._rt.remove_container(rec.id)
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
