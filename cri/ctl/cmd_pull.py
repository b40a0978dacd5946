"""enginectl pull REF: pull through engined with per-layer progress."""
from __future__ import annotations

import argparse

from cri.api import engine_pb2 as epb
from cri.ctl.context import Ctx
from cri.ctl.errors import CtlError
from cri.ctl.progress import Progress

HELP = "pull an image from a registry"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", metavar="REF", help="image reference, e.g. busybox:1.36")
    p.add_argument("--creds", metavar="USER:PASS", help="registry credentials")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image ID")


def credentials(creds: str | None) -> epb.Credentials | None:
    if creds is None:
        return None
    user, sep, password = creds.partition(":")
    if not sep or not user:
        raise CtlError("--creds must be USER:PASSWORD")
    return epb.Credentials(username=user, password=password)


def pull(ctx: Ctx, ref: str, *, creds: epb.Credentials | None, quiet: bool) -> str:
    """Pull `ref`, rendering progress on stderr unless quiet; returns the image ID."""
    request = epb.PullImageRequest(ref=ref, credentials=creds)
    progress = None if quiet else Progress(ctx.err, tty=ctx.err.isatty())
    for event in ctx.conn.stream(ctx.conn.engine.PullImage, request):
        if event.image_id:
            return str(event.image_id)
        if progress is not None:
            progress.update(event)
    raise CtlError(f"pull of {ref!r} ended without an image ID")


def run(ns: argparse.Namespace, ctx: Ctx) -> int:
    image_id = pull(ctx, ns.ref, creds=credentials(ns.creds), quiet=ns.quiet)
    if not ns.quiet:
        ctx.out.write(f"Pulled: {ns.ref}\n")
    ctx.out.write(f"{image_id}\n" if ns.quiet else f"Image ID: {image_id}\n")
    return 0
