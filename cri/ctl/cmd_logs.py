"""enginectl logs [-f] [--tail N] ID: a container's CRI log file, as plain output."""
from __future__ import annotations

import argparse
from pathlib import Path

from cri.api import runtime_pb2 as pb
from cri.ctl import crilog, lookup
from cri.ctl.context import Ctx
from cri.ctl.errors import CtlError

HELP = "print a container's logs"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", help="keep following the log")
    p.add_argument("--tail", type=int, default=-1, metavar="N",
                   help="only the last N lines (default: all)")
    p.add_argument("container", metavar="ID", help="container ID, ID prefix or name")


def status(ctx: Ctx, container_id: str) -> pb.ContainerStatus:
    resp = ctx.conn.call(ctx.conn.runtime.ContainerStatus,
                         pb.ContainerStatusRequest(container_id=container_id))
    found: pb.ContainerStatus = resp.status
    return found


def running(ctx: Ctx, container_id: str) -> bool:
    try:
        return bool(status(ctx, container_id).state == pb.CONTAINER_RUNNING)
    except CtlError:
        return False  # removed meanwhile: nothing more will be written


def write(ctx: Ctx, item: crilog.Entry | bytes) -> None:
    stream, data = crilog.render(item)
    target = ctx.err_bytes if stream == "stderr" else ctx.out_bytes
    target.write(data)
    target.flush()


def show(ctx: Ctx, container_id: str, *, follow: bool, tail: int) -> None:
    """Print the log of `container_id`; with `follow`, until the container stops."""
    log_path = status(ctx, container_id).log_path
    if not log_path:
        raise CtlError(f"container {container_id[:12]} has no log file")
    path = Path(log_path)
    try:
        with path.open("rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    except OSError as exc:
        raise CtlError(f"cannot read {path}: {exc.strerror}") from None
    lines = data.split(b"\n")
    complete, rest = lines[:-1], lines[-1]
    for item in crilog.tail(crilog.parse(complete), tail):
        write(ctx, item)
    if not follow:
        if rest:
            write(ctx, crilog.parse([rest])[0])
        return
    follower = crilog.Follower(path, alive=lambda: running(ctx, container_id))
    for line in follower.lines(start=len(data) - len(rest)):
        write(ctx, crilog.parse([line])[0])


def run(ns: argparse.Namespace, ctx: Ctx) -> int:
    found = lookup.container(ctx, ns.container)
    show(ctx, found.id, follow=ns.follow, tail=ns.tail)
    return 0
