"""The layer graph as a forest, for `enginectl graph`: which images share which layers."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from engine.graph.model import Image, Layer


@dataclasses.dataclass(frozen=True)
class LayerNode:
    chain_id: str
    diff_id: str
    size: int  # unpacked bytes of this layer alone
    used_by: tuple[str, ...]  # image IDs whose stack includes this layer
    tops: tuple[str, ...]  # names (or IDs) of the images whose top layer this is
    children: tuple[LayerNode, ...]


def layer_forest(layers: Sequence[Layer], images: Sequence[Image]) -> list[LayerNode]:
    """Roots (base layers) first; children sorted by chain ID for a stable display."""
    kids: dict[str | None, list[Layer]] = {}
    for layer in layers:
        kids.setdefault(layer.parent, []).append(layer)
    tops: dict[str, list[str]] = {}
    for img in images:
        if img.top_layer is not None:
            tops.setdefault(img.top_layer, []).extend(
                img.repo_tags or img.repo_digests or (img.id,))

    def build(layer: Layer) -> LayerNode:
        below = sorted(kids.get(layer.chain_id, []), key=lambda x: x.chain_id)
        return LayerNode(layer.chain_id, layer.diff_id, layer.size, layer.images,
                         tuple(tops.get(layer.chain_id, ())), tuple(build(k) for k in below))

    return [build(root) for root in sorted(kids.get(None, []), key=lambda x: x.chain_id)]
