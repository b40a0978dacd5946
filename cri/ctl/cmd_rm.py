"""enginectl rm [-f] ID...: remove containers (and the pod `enginectl run` made for one)."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cri.api import runtime_pb2 as pb
from cri.ctl import lookup
from cri.ctl.cmd_stop import stop
from cri.ctl.context import Ctx
from cri.ctl.errors import EXIT_ENGINECTL, CtlError

HELP = "remove containers"
RUN_LABEL = "io.kubelet-py.enginectl/run"  # on pods and containers `enginectl run` creates
NAMESPACE = "default"  # of the pods `enginectl run` creates
LOG_ROOT = "/var/log/pods"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="stop a running container first")
    p.add_argument("containers", metavar="ID", nargs="+")


def remove(ctx: Ctx, container: pb.Container, *, force: bool) -> None:
    if container.state == pb.CONTAINER_RUNNING:
        if not force:
            raise CtlError(f"FAILED_PRECONDITION: container {container.id[:12]} is running: "
                           "stop it first or use rm -f")
        stop(ctx, container.id, 0)
    log_path = ctx.conn.call(ctx.conn.runtime.ContainerStatus, pb.ContainerStatusRequest(
        container_id=container.id)).status.log_path
    ctx.conn.call(ctx.conn.runtime.RemoveContainer,
                  pb.RemoveContainerRequest(container_id=container.id))
    if container.labels.get(RUN_LABEL) == "true":
        remove_run_pod(ctx, container.pod_sandbox_id, log_path=log_path)


def remove_run_pod(ctx: Ctx, sandbox_id: str, *, log_path: str) -> None:
    """Remove the one-container pod of `enginectl run` once it holds no container, and
    its log directory (the kubelet's job for its pods; ours for the pods run made)."""
    request = pb.ListContainersRequest()
    request.filter.pod_sandbox_id = sandbox_id
    if ctx.conn.call(ctx.conn.runtime.ListContainers, request).containers:
        return
    ctx.conn.call(ctx.conn.runtime.StopPodSandbox,
                  pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
    ctx.conn.call(ctx.conn.runtime.RemovePodSandbox,
                  pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
    pod_logs = Path(log_path).parent.parent if log_path else None
    if pod_logs is not None and pod_logs.parent == Path(LOG_ROOT) and \
            pod_logs.name.startswith(f"{NAMESPACE}_"):
        shutil.rmtree(pod_logs, ignore_errors=True)


def run(ns: argparse.Namespace, ctx: Ctx) -> int:
    failed = False
    for key in ns.containers:
        try:
            remove(ctx, lookup.container(ctx, key), force=ns.force)
            ctx.out.write(f"{key}\n")
        except CtlError as exc:
            ctx.err.write(f"enginectl: {exc}\n")
            failed = True
    return EXIT_ENGINECTL if failed else 0
