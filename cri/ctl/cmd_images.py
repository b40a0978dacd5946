"""enginectl images: the local images, as a table or JSON."""
from __future__ import annotations

import argparse

from cri.api import runtime_pb2 as pb
from cri.ctl.context import Ctx
from cri.ctl.render import dumps, human_size, message_dict, short_id, split_ref, table

HELP = "list images"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.add_argument("-q", "--quiet", action="store_true", help="print only image IDs")


def rows(images: list[pb.Image]) -> list[list[str]]:
    out: list[list[str]] = []
    for image in sorted(images, key=lambda i: (list(i.repo_tags), i.id)):
        size = human_size(image.size)
        names = list(image.repo_tags) or [f"{split_ref(d)[0]}:<none>" for d in image.repo_digests]
        for name in names or ["<none>:<none>"]:
            repo, tag = split_ref(name)
            out.append([repo, tag, short_id(image.id), size])
    return out


def run(ns: argparse.Namespace, ctx: Ctx) -> int:
    resp = ctx.conn.call(ctx.conn.images.ListImages, pb.ListImagesRequest())
    images = list(resp.images)
    if ns.output == "json":
        ctx.out.write(dumps(message_dict(resp).get("images", [])))
    elif ns.quiet:
        ctx.out.writelines(f"{i.id}\n" for i in images)
    else:
        ctx.out.write(table(["REPOSITORY", "TAG", "IMAGE ID", "SIZE"], rows(images)))
    return 0
