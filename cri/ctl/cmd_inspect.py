"""enginectl inspect REF|ID...: containers, pod sandboxes or images, as JSON."""
from __future__ import annotations

import argparse
from typing import Any

import grpc

from cri.api import engine_pb2 as epb
from cri.api import runtime_pb2 as pb
from cri.ctl import lookup
from cri.ctl.context import Ctx
from cri.ctl.errors import EXIT_ENGINECTL, CtlError
from cri.ctl.render import dumps, message_dict, with_info

HELP = "show details of containers, pod sandboxes or images as JSON"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", metavar="REF|ID", nargs="+")


def _runtime(ctx: Ctx, key: str) -> dict[str, Any] | None:
    """The container or sandbox `key` names; None when there is none (or no runtime)."""
    try:
        found = lookup.find_container(ctx, key)
        if found is not None:
            resp = ctx.conn.call(ctx.conn.runtime.ContainerStatus, pb.ContainerStatusRequest(
                container_id=found.id, verbose=True))
            return {"kind": "container",
                    **with_info(message_dict(resp.status), dict(resp.info))}
        sandbox = lookup.find_sandbox(ctx, key)
        if sandbox is not None:
            presp = ctx.conn.call(ctx.conn.runtime.PodSandboxStatus, pb.PodSandboxStatusRequest(
                pod_sandbox_id=sandbox.id, verbose=True))
            return {"kind": "sandbox",
                    **with_info(message_dict(presp.status), dict(presp.info))}
    except CtlError as exc:
        if not str(exc).startswith(grpc.StatusCode.UNIMPLEMENTED.name):
            raise
    return None


def inspect_one(ctx: Ctx, key: str) -> dict[str, Any]:
    found = _runtime(ctx, key)
    if found is not None:
        return found
    detail = ctx.conn.call(ctx.conn.engine.InspectImage, epb.InspectImageRequest(ref=key))
    return {"kind": "image", **message_dict(detail)}


def run(ns: argparse.Namespace, ctx: Ctx) -> int:
    results: list[dict[str, Any]] = []
    failed = False
    for key in ns.targets:
        try:
            results.append(inspect_one(ctx, key))
        except CtlError as exc:
            ctx.err.write(f"enginectl: {exc}\n")
            failed = True
    ctx.out.write(dumps(results))
    return EXIT_ENGINECTL if failed else 0
