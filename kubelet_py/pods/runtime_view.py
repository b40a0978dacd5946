"""Read the runtime's state of one pod (or all pods) through the CRI into model values."""
from __future__ import annotations

import asyncio
import datetime as dt

from cri.api import runtime_pb2 as pb
from kubelet_py.cri_client import CRIClient, CRIError
from kubelet_py.pods.model import (
    ANNOTATION_CONTAINER_HASH,
    LABEL_POD_UID,
    PodRuntime,
    RuntimeContainer,
    RuntimeSandbox,
    State,
)

_STATES = {pb.CONTAINER_CREATED: State.CREATED, pb.CONTAINER_RUNNING: State.RUNNING,
           pb.CONTAINER_EXITED: State.EXITED, pb.CONTAINER_UNKNOWN: State.UNKNOWN}


def from_nanos(ns: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC) if ns > 0 else None


def container_from_status(s: pb.ContainerStatus, sandbox_id: str) -> RuntimeContainer:
    return RuntimeContainer(
        id=s.id, name=s.metadata.name, attempt=s.metadata.attempt,
        state=_STATES.get(s.state, State.UNKNOWN), sandbox_id=sandbox_id,
        image=s.image.image, image_ref=s.image_ref, created_at=from_nanos(s.created_at),
        started_at=from_nanos(s.started_at), finished_at=from_nanos(s.finished_at),
        exit_code=s.exit_code, reason=s.reason, message=s.message,
        hash=s.annotations.get(ANNOTATION_CONTAINER_HASH, ""))


def sandbox_from_status(s: pb.PodSandboxStatus) -> RuntimeSandbox:
    ips = tuple(ip for ip in [s.network.ip, *(a.ip for a in s.network.additional_ips)] if ip)
    return RuntimeSandbox(id=s.id, attempt=s.metadata.attempt,
                          ready=s.state == pb.SANDBOX_READY,
                          created_at=from_nanos(s.created_at) or dt.datetime.now(dt.UTC),
                          ips=ips)


async def _container(cri: CRIClient, c: pb.Container) -> RuntimeContainer | None:
    try:
        return container_from_status(await cri.containers.status(c.id), c.pod_sandbox_id)
    except CRIError as exc:
        if exc.not_found:
            return None  # removed between list and status
        raise


async def _sandbox(cri: CRIClient, sandbox_id: str) -> RuntimeSandbox | None:
    try:
        return sandbox_from_status(await cri.sandboxes.status(sandbox_id))
    except CRIError as exc:
        if exc.not_found:
            return None
        raise


async def pod_runtime(cri: CRIClient, uid: str) -> PodRuntime:
    """Fresh state of one pod: its sandboxes and containers, each with a full status."""
    selector = {LABEL_POD_UID: uid}
    sandboxes, containers = await asyncio.gather(cri.sandboxes.list(labels=selector),
                                                 cri.containers.list(labels=selector))
    sb = await asyncio.gather(*(_sandbox(cri, s.id) for s in sandboxes))
    cs = await asyncio.gather(*(_container(cri, c) for c in containers))
    return PodRuntime(sandboxes=tuple(s for s in sb if s is not None),
                      containers=tuple(c for c in cs if c is not None))


async def snapshot(cri: CRIClient) -> dict[str, str]:
    """Cheap relist for the PLEG: `<kind>/<id>` -> `<uid> <state>` of everything."""
    sandboxes, containers = await asyncio.gather(cri.sandboxes.list(),
                                                 cri.containers.list())
    out = {f"s/{s.id}": f"{s.labels.get(LABEL_POD_UID, '')} {s.state}" for s in sandboxes}
    out.update({f"c/{c.id}": f"{c.labels.get(LABEL_POD_UID, '')} {c.state}"
                for c in containers})
    return out
