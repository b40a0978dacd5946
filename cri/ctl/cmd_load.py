"""enginectl load -i FILE: import a `docker save` or OCI layout tar archive."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import BinaryIO

from cri.api import engine_pb2 as epb
from cri.ctl.context import Ctx
from cri.ctl.errors import CtlError

HELP = "load images from a tar archive (docker save or OCI layout)"
CHUNK_BYTES = 1 << 20


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", metavar="FILE", help="archive to read (default stdin)")


def chunks(f: BinaryIO) -> Iterator[epb.ArchiveChunk]:
    while data := f.read(CHUNK_BYTES):
        yield epb.ArchiveChunk(data=data)


def run(ns: argparse.Namespace, ctx: Ctx) -> int:
    if ns.input is None:
        if sys.stdin.isatty():
            raise CtlError("requested load from stdin, but stdin is a terminal; use -i FILE")
        resp = ctx.conn.call(ctx.conn.engine.LoadImages, chunks(sys.stdin.buffer))
    else:
        try:
            f = open(ns.input, "rb")  # noqa: SIM115 (closed right below)
        except OSError as exc:
            raise CtlError(f"cannot read {ns.input}: {exc.strerror}") from None
        with f:
            resp = ctx.conn.call(ctx.conn.engine.LoadImages, chunks(f))
    for image in resp.images:
        names = list(image.repo_tags) or [image.id]
        ctx.out.writelines(f"Loaded image: {n}\n" for n in names)
    return 0
