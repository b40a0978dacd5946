"""enginectl ps [-a]: containers with their pods, like docker ps / crictl ps."""
from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from cri.api import runtime_pb2 as pb
from cri.ctl.context import Ctx
from cri.ctl.render import ago, dumps, message_dict, short_id, table

HELP = "list containers (running ones unless -a)"
HEADERS = ("CONTAINER ID", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD")
POD_NAME_LABEL = "io.kubernetes.pod.name"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="also containers not running")
    p.add_argument("-q", "--quiet", action="store_true", help="print only container IDs")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")


def state_name(state: int) -> str:
    return str(pb.ContainerState.Name(state)).removeprefix("CONTAINER_").capitalize()


def image_name(c: pb.Container) -> str:
    return str(c.image.user_specified_image or c.image.image or c.image_ref)


def rows(containers: Sequence[pb.Container], pods: Mapping[str, str],
         now_ns: int) -> list[list[str]]:
    ordered = sorted(containers, key=lambda c: c.created_at, reverse=True)
    return [[short_id(c.id, 13), image_name(c), ago(c.created_at, now_ns),
             state_name(c.state), c.metadata.name, str(c.metadata.attempt),
             short_id(c.pod_sandbox_id, 13),
             pods.get(c.pod_sandbox_id) or c.labels.get(POD_NAME_LABEL, "")]
            for c in ordered]


def run(ns: argparse.Namespace, ctx: Ctx) -> int:
    request = pb.ListContainersRequest()
    if not ns.all:
        request.filter.state.state = pb.CONTAINER_RUNNING
    resp = ctx.conn.call(ctx.conn.runtime.ListContainers, request)
    if ns.output == "json":
        ctx.out.write(dumps(message_dict(resp).get("containers", [])))
        return 0
    if ns.quiet:
        ctx.out.writelines(f"{c.id}\n" for c in resp.containers)
        return 0
    sandboxes = ctx.conn.call(ctx.conn.runtime.ListPodSandbox, pb.ListPodSandboxRequest())
    pods = {s.id: s.metadata.name for s in sandboxes.items}
    ctx.out.write(table(HEADERS, rows(list(resp.containers), pods, ctx.now_ns())))
    return 0
