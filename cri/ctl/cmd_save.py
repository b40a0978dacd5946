"""enginectl save -o FILE REF...: export images as one tar archive."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from cri.api import engine_pb2 as epb
from cri.ctl.context import Ctx
from cri.ctl.errors import CtlError

HELP = "save images to a tar archive (OCI layout with docker's manifest.json)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="archive to write")
    p.add_argument("refs", metavar="REF", nargs="+")


def run(ns: argparse.Namespace, ctx: Ctx) -> int:
    target = Path(ns.output)
    tmp = target.with_name(f".{target.name}.enginectl-tmp")
    stream = ctx.conn.stream(ctx.conn.engine.SaveImages, epb.SaveImagesRequest(refs=ns.refs))
    try:
        with tmp.open("wb") as f:
            for chunk in stream:
                f.write(chunk.data)
        os.replace(tmp, target)  # the archive appears whole or not at all
    except OSError as exc:
        raise CtlError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return 0
