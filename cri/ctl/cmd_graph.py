"""enginectl graph: the layer tree, which images share which layers, with sizes."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from cri.api import engine_pb2 as epb
from cri.ctl.context import Ctx
from cri.ctl.render import dumps, human_size, message_dict, short_id

HELP = "show the layer tree: which images share which layers, with sizes"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("tree", "json"), default="tree")


def _total(node: epb.LayerNode) -> int:
    return int(node.size) + sum(_total(c) for c in node.children)


def tree(roots: Sequence[epb.LayerNode]) -> str:
    """One line per layer, children indented under their parent:

        └─ 3f5e1a2b9c0d 4.27MB  shared by 2 images
           ├─ 9a8b7c6d5e4f 120B  busybox:1.36
    """
    lines: list[str] = []

    def walk(node: epb.LayerNode, prefix: str, last: bool) -> None:
        users = len(node.used_by)
        text = f"{short_id(node.chain_id)} {human_size(node.size)}"
        if users > 1:
            text += f"  shared by {users} images"
        if node.tops:
            text += "  " + ", ".join(node.tops)
        lines.append(f"{prefix}{'└─ ' if last else '├─ '}{text}")
        kids = list(node.children)
        for i, child in enumerate(kids):
            walk(child, prefix + ("   " if last else "│  "), i == len(kids) - 1)

    for i, root in enumerate(roots):
        walk(root, "", i == len(roots) - 1)
    total = sum(_total(r) for r in roots)
    lines.append(f"{_count(roots)} layers, {human_size(total)} unpacked")
    return "\n".join(lines) + "\n"


def _count(nodes: Sequence[epb.LayerNode]) -> int:
    return sum(1 + _count(list(n.children)) for n in nodes)


def run(ns: argparse.Namespace, ctx: Ctx) -> int:
    resp = ctx.conn.call(ctx.conn.engine.LayerGraph, epb.LayerGraphRequest())
    if ns.output == "json":
        ctx.out.write(dumps(message_dict(resp).get("roots", [])))
    else:
        ctx.out.write(tree(list(resp.roots)))
    return 0
