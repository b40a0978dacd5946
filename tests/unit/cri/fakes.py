"""In-memory engine ports for the CRI servicer tests."""
from __future__ import annotations

import secrets
from collections.abc import Sequence

from cri.api import runtime_pb2 as pb
from cri.server.ports import (
    ContainerStatsEntry,
    ExecResult,
    FilesystemUsage,
    ImageRecord,
    RegistryAuth,
    StatusWithInfo,
)
from engine.errors import FailedPrecondition, NotFound, Unavailable


def new_id() -> str:
    return secrets.token_hex(32)


class FakeNetwork:
    def __init__(self, ready: tuple[bool, str] = (True, "")) -> None:
        self.state = ready
        self.cidrs: list[str] = []

    def ready(self) -> tuple[bool, str]:
        return self.state

    def set_pod_cidr(self, cidr: str) -> None:
        self.cidrs.append(cidr)


class FakeSandboxes:
    def __init__(self) -> None:
        self.items: dict[str, pb.PodSandbox] = {}
        self.stops: list[str] = []

    def ready(self) -> tuple[bool, str]:
        return True, ""

    def run_sandbox(self, config: pb.PodSandboxConfig, *, runtime_handler: str) -> str:
        if runtime_handler not in ("", "runc"):
            raise NotFound(f"no runtime handler {runtime_handler!r}")
        sid = new_id()
        self.items[sid] = pb.PodSandbox(id=sid, metadata=config.metadata, created_at=1,
                                        labels=config.labels, annotations=config.annotations,
                                        state=pb.SANDBOX_READY)
        return sid

    def stop_sandbox(self, sandbox_id: str) -> None:
        if sandbox_id not in self.items:
            raise NotFound(f"sandbox {sandbox_id} not found")
        self.stops.append(sandbox_id)
        self.items[sandbox_id].state = pb.SANDBOX_NOTREADY

    def remove_sandbox(self, sandbox_id: str) -> None:
        if self.items.pop(sandbox_id, None) is None:
            raise NotFound(f"sandbox {sandbox_id} not found")

    def sandbox_status(self, sandbox_id: str, *,
                       verbose: bool) -> StatusWithInfo[pb.PodSandboxStatus]:
        item = self.items.get(sandbox_id)
        if item is None:
            raise NotFound(f"sandbox {sandbox_id} not found")
        return StatusWithInfo(pb.PodSandboxStatus(id=item.id, metadata=item.metadata,
                                                  state=item.state),
                              {"pid": "42"})

    def list_sandboxes(self) -> Sequence[pb.PodSandbox]:
        return list(self.items.values())


class FakeContainers:
    def __init__(self) -> None:
        self.items: dict[str, pb.Container] = {}
        self.stopped: list[tuple[str, int]] = []

    def create_container(self, sandbox_id: str, config: pb.ContainerConfig, *,
                         sandbox_config: pb.PodSandboxConfig) -> str:
        cid = new_id()
        self.items[cid] = pb.Container(id=cid, pod_sandbox_id=sandbox_id,
                                       metadata=config.metadata, labels=config.labels,
                                       state=pb.CONTAINER_CREATED)
        return cid

    def _get(self, container_id: str) -> pb.Container:
        item = self.items.get(container_id)
        if item is None:
            raise NotFound(f"container {container_id} not found")
        return item

    def start_container(self, container_id: str) -> None:
        item = self._get(container_id)
        if item.state != pb.CONTAINER_CREATED:
            raise FailedPrecondition(f"container {container_id} is not in the created state")
        item.state = pb.CONTAINER_RUNNING

    def stop_container(self, container_id: str, *, timeout_s: int) -> None:
        self._get(container_id).state = pb.CONTAINER_EXITED
        self.stopped.append((container_id, timeout_s))

    def remove_container(self, container_id: str) -> None:
        self._get(container_id)
        del self.items[container_id]

    def container_status(self, container_id: str, *,
                         verbose: bool) -> StatusWithInfo[pb.ContainerStatus]:
        item = self._get(container_id)
        return StatusWithInfo(pb.ContainerStatus(id=item.id, state=item.state,
                                                 metadata=item.metadata))

    def list_containers(self) -> Sequence[pb.Container]:
        return list(self.items.values())

    def update_resources(self, container_id: str,
                         resources: pb.LinuxContainerResources) -> None:
        self._get(container_id)

    def reopen_log(self, container_id: str) -> None:
        if self._get(container_id).state != pb.CONTAINER_RUNNING:
            raise FailedPrecondition("container is not running")

    def exec_sync(self, container_id: str, cmd: Sequence[str], *,
                  timeout_s: int) -> ExecResult:
        self._get(container_id)
        return ExecResult(stdout=" ".join(cmd).encode(), stderr=b"", exit_code=3)


class FakeImages:
    def __init__(self) -> None:
        self.images: dict[str, ImageRecord] = {}
        self.auths: list[RegistryAuth | None] = []

    def list_images(self) -> Sequence[ImageRecord]:
        return list(self.images.values())

    def _find(self, ref: str) -> ImageRecord | None:
        for record in self.images.values():
            if record.id == ref or ref in record.repo_tags:
                return record
        return None

    def image_status(self, ref: str) -> ImageRecord | None:
        return self._find(ref)

    def pull_image(self, ref: str, *, auth: RegistryAuth | None) -> str:
        self.auths.append(auth)
        if ref.startswith("unreachable.example/"):
            raise Unavailable(f"registry for {ref} cannot be reached")
        image_id = "sha256:" + f"{len(self.images) + 1:064x}"
        self.images[image_id] = ImageRecord(id=image_id, repo_tags=(ref,), size=1234, uid=0)
        return image_id

    def remove_image(self, ref: str) -> None:
        record = self._find(ref)
        if record is None:
            raise NotFound(f"image {ref} not found")
        del self.images[record.id]

    def image_fs_usage(self) -> Sequence[FilesystemUsage]:
        return [FilesystemUsage(mountpoint="/var/lib/x", used_bytes=10, inodes_used=2,
                                timestamp_ns=5)]


class FakeStats:
    def container_stats(self, container_id: str) -> pb.ContainerStats:
        raise NotFound(f"container {container_id} not found")

    def list_container_stats(self) -> Sequence[ContainerStatsEntry]:
        return [ContainerStatsEntry(pod_sandbox_id=f"sb{i}", stats=pb.ContainerStats(
            attributes=pb.ContainerAttributes(id=f"c{i}", labels={"n": str(i)})))
            for i in range(250)]

    def sandbox_stats(self, sandbox_id: str) -> pb.PodSandboxStats:
        return pb.PodSandboxStats(attributes=pb.PodSandboxAttributes(id=sandbox_id))

    def list_sandbox_stats(self) -> Sequence[pb.PodSandboxStats]:
        return list(self.sandboxes)

    sandboxes: Sequence[pb.PodSandboxStats] = ()


class FakeStreaming:
    def prepare_exec(self, request: pb.ExecRequest) -> str:
        return f"http://127.0.0.1:1/exec/{request.container_id}"

    def prepare_attach(self, request: pb.AttachRequest) -> str:
        return f"http://127.0.0.1:1/attach/{request.container_id}"

    def prepare_port_forward(self, request: pb.PortForwardRequest) -> str:
        return f"http://127.0.0.1:1/portforward/{request.pod_sandbox_id}"
