"""Engine values to kubeletpy.engine.v1 messages (enginectl's extension service)."""
from __future__ import annotations

from cri.api import engine_pb2 as epb
from engine.graph.model import Image
from engine.graph.pull import PullEvent
from engine.graph.tree import LayerNode


def progress_message(event: PullEvent) -> epb.PullProgress:
    return epb.PullProgress(phase=event.phase, layer=event.layer, current=event.current,
                            total=event.total)


def image_detail(image: Image) -> epb.ImageDetail:
    cfg = image.config
    return epb.ImageDetail(
        id=image.id, repo_tags=image.repo_tags, repo_digests=image.repo_digests,
        size=image.size, manifest=image.manifest, index=image.index or "",
        layers=[epb.LayerInfo(blob=lr.blob, blob_size=lr.blob_size, media_type=lr.media_type,
                              diff_id=lr.diff_id, chain_id=lr.chain_id)
                for lr in image.layers],
        config=epb.ImageConfig(
            os=cfg.os, architecture=cfg.architecture, user=cfg.user, env=cfg.env,
            entrypoint=cfg.entrypoint, cmd=cfg.cmd, working_dir=cfg.working_dir,
            labels=dict(cfg.labels), exposed_ports=cfg.exposed_ports, volumes=cfg.volumes,
            stop_signal=cfg.stop_signal, created=cfg.created),
        pulled_at=image.pulled_at)


def layer_node(node: LayerNode) -> epb.LayerNode:
    return epb.LayerNode(chain_id=node.chain_id, diff_id=node.diff_id, size=node.size,
                         used_by=node.used_by, tops=node.tops,
                         children=[layer_node(c) for c in node.children])
