"""enginectl rmi REF...: untag, or remove the image with its last reference (docker rmi)."""
from __future__ import annotations

import argparse

from cri.api import engine_pb2 as epb
from cri.ctl.context import Ctx
from cri.ctl.errors import EXIT_ENGINECTL, CtlError

HELP = "remove images"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("refs", metavar="REF", nargs="+", help="image reference, ID or ID prefix")


def run(ns: argparse.Namespace, ctx: Ctx) -> int:
    failed = 0
    for ref in ns.refs:
        try:
            resp = ctx.conn.call(ctx.conn.engine.RemoveImage, epb.RemoveImageRequest(ref=ref))
        except CtlError as exc:
            ctx.err.write(f"enginectl: {exc}\n")
            failed += 1
            continue
        ctx.out.writelines(f"Untagged: {u}\n" for u in resp.untagged)
        ctx.out.writelines(f"Deleted: {d}\n" for d in resp.deleted)
    return EXIT_ENGINECTL if failed else 0
