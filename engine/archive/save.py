"""Export images as one tar that is both an OCI image layout and a `docker save` archive
(`oci-layout`, `index.json`, `blobs/sha256/*` plus `manifest.json`), as Docker >= 25 does,
so `docker load`, `ctr import`, `skopeo` and our own `load` all read it."""
from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

from engine.graph import digest as dg
from engine.graph.graph import Graph
from engine.graph.model import Image
from engine.registry import manifest as mf
from engine.registry.reference import parse


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(mtime), 0o644
    tar.addfile(info, io.BytesIO(data))


def save_archive(graph: Graph, images: list[Image], names: list[str], path: Path) -> None:
    """Write `images` (with the names asked for, when they are theirs) to `path` atomically."""
    now = time.time()
    tmp = path.with_name(f".{path.name}.tmp")
    index: list[dict[str, object]] = []
    docker: list[dict[str, object]] = []
    written: set[str] = set()
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', now)
        for image, asked in zip(images, names, strict=True):
            blobs = [image.manifest, image.id] + [lr.blob for lr in image.layers]
            for digest in blobs:
                if digest in written:
                    continue
                written.add(digest)
                info = tarfile.TarInfo(f"blobs/sha256/{dg.hex_of(digest)}")
                info.size, info.mtime, info.mode = graph.content.size(digest), int(now), 0o644
                with graph.content.open(digest) as f:
                    tar.addfile(info, f)
            tags = list(image.repo_tags)
            asked_name = str(parse(asked)) if not asked.startswith("sha256:") else ""
            if asked_name in tags:
                tags = [asked_name]
            manifest = graph.content.read(image.manifest)
            media = json.loads(manifest).get("mediaType") or mf.OCI_MANIFEST
            for tag in tags or [""]:
                annotations = {"io.containerd.image.name": tag,
                               "org.opencontainers.image.ref.name": parse(tag).tag or ""
                               } if tag else {}
                index.append({"mediaType": media, "digest": image.manifest,
                              "size": len(manifest), "annotations": annotations})
            docker.append({"Config": f"blobs/sha256/{dg.hex_of(image.id)}", "RepoTags": tags,
                           "Layers": [f"blobs/sha256/{dg.hex_of(lr.blob)}"
                                      for lr in image.layers]})
        doc = {"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": index}
        _add_bytes(tar, "index.json", json.dumps(doc).encode(), now)
        _add_bytes(tar, "manifest.json", json.dumps(docker).encode(), now)
    tmp.replace(path)
