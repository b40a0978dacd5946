"""enginectl stop [-t SECONDS] ID...: stop containers (SIGTERM, then SIGKILL)."""
from __future__ import annotations

import argparse

from cri.api import runtime_pb2 as pb
from cri.ctl import lookup
from cri.ctl.context import Ctx
from cri.ctl.errors import EXIT_ENGINECTL, CtlError

HELP = "stop running containers"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--time", type=int, default=10, metavar="SECONDS",
                   help="seconds to wait before killing (default 10)")
    p.add_argument("containers", metavar="ID", nargs="+")


def stop(ctx: Ctx, container_id: str, timeout_s: int) -> None:
    ctx.conn.call(ctx.conn.runtime.StopContainer,
                  pb.StopContainerRequest(container_id=container_id, timeout=timeout_s),
                  timeout_s=timeout_s + ctx.conn.timeout_s)


def run(ns: argparse.Namespace, ctx: Ctx) -> int:
    if ns.time < 0:
        raise CtlError("-t must not be negative")
    failed = False
    for key in ns.containers:
        try:
            found = lookup.container(ctx, key)
            stop(ctx, found.id, ns.time)
            ctx.out.write(f"{key}\n")
        except CtlError as exc:
            ctx.err.write(f"enginectl: {exc}\n")
            failed = True
    return EXIT_ENGINECTL if failed else 0
