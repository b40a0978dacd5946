"""enginectl run [--name N] [--rm] [-d] IMAGE [CMD...]: a one-container pod.

RunPodSandbox, PullImage when the image is missing, CreateContainer, StartContainer; then,
unless -d, the container's output until it exits, and its exit code as ours."""
from __future__ import annotations

import argparse
import re
import secrets
import uuid

from cri.api import runtime_pb2 as pb
from cri.ctl import cmd_logs
from cri.ctl.cmd_pull import pull
from cri.ctl.cmd_rm import LOG_ROOT, NAMESPACE, RUN_LABEL, remove_run_pod
from cri.ctl.context import Ctx
from cri.ctl.errors import CtlError

HELP = "run a command in a new one-container pod"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="pod and container name (default: a random one)")
    p.add_argument("--rm", action="store_true", help="remove the pod when the container exits")
    p.add_argument("-d", "--detach", action="store_true", help="print the ID and return")
    p.add_argument("--network", choices=("pod", "host"), default="pod",
                   help="the pod's own network (CNI, default) or the host's")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("cmd", metavar="CMD", nargs=argparse.REMAINDER)


def sandbox_config(name: str, *, host_network: bool) -> pb.PodSandboxConfig:
    uid = str(uuid.uuid4())
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=NAMESPACE, attempt=0),
        hostname=name, log_directory=f"{LOG_ROOT}/{NAMESPACE}_{name}_{uid}",
        labels={RUN_LABEL: "true"})
    if host_network:
        config.linux.security_context.namespace_options.network = pb.NODE
    return config


def container_config(name: str, image: str, *, args: list[str],
                     env: list[str]) -> pb.ContainerConfig:
    envs = []
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CtlError(f"-e needs KEY=VALUE, not {item!r}")
        envs.append(pb.KeyValue(key=key, value=value.encode()))
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name, attempt=0),
        image=pb.ImageSpec(image=image, user_specified_image=image), args=args, envs=envs,
        log_path=f"{name}/0.log", labels={RUN_LABEL: "true"})


def ensure_image(ctx: Ctx, image: str) -> None:
    status = ctx.conn.call(ctx.conn.images.ImageStatus,
                           pb.ImageStatusRequest(image=pb.ImageSpec(image=image)))
    if not status.HasField("image"):
        ctx.err.write(f"Unable to find image '{image}' locally\n")
        pull(ctx, image, creds=None, quiet=False)


def run(ns: argparse.Namespace, ctx: Ctx) -> int:
    name = ns.name or f"enginectl-{secrets.token_hex(4)}"
    if not _NAME.match(name):
        raise CtlError(f"--name {name!r} must be a DNS label (lowercase letters, digits, '-')")
    cconfig = container_config(name, ns.image, args=list(ns.cmd), env=ns.env)
    ensure_image(ctx, ns.image)
    sconfig = sandbox_config(name, host_network=ns.network == "host")
    sandbox_id = ctx.conn.call(ctx.conn.runtime.RunPodSandbox,
                               pb.RunPodSandboxRequest(config=sconfig)).pod_sandbox_id
    try:
        container_id = ctx.conn.call(ctx.conn.runtime.CreateContainer, pb.CreateContainerRequest(
            pod_sandbox_id=sandbox_id, config=cconfig, sandbox_config=sconfig)).container_id
        ctx.conn.call(ctx.conn.runtime.StartContainer,
                      pb.StartContainerRequest(container_id=container_id))
    except CtlError:
        _discard(ctx, sandbox_id)
        raise
    if ns.detach:
        ctx.out.write(f"{container_id}\n")
        return 0
    cmd_logs.show(ctx, container_id, follow=True, tail=-1)
    final = cmd_logs.status(ctx, container_id)
    if ns.rm:
        ctx.conn.call(ctx.conn.runtime.RemoveContainer,
                      pb.RemoveContainerRequest(container_id=container_id))
        remove_run_pod(ctx, sandbox_id, log_path=final.log_path)
    return int(final.exit_code)


def _discard(ctx: Ctx, sandbox_id: str) -> None:
    """Remove the half-made pod (its containers go with it) after a failed create/start."""
    for rpc, request in ((ctx.conn.runtime.StopPodSandbox,
                          pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id)),
                         (ctx.conn.runtime.RemovePodSandbox,
                          pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))):
        try:
            ctx.conn.call(rpc, request)
        except CtlError as exc:
            ctx.err.write(f"enginectl: cleaning up pod {sandbox_id[:12]}: {exc}\n")
