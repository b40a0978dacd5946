"""Import a `docker save` archive or an OCI image-layout tar (like `ctr import`/`kind load`).

The archive is read with random access (tarfile on a file); members are looked up only by
the exact names the archive's own index points at and are streamed into the content store,
never extracted to the filesystem. Every blob is verified like a pulled one, and layers are
unpacked and checked against the config's diff IDs. OCI layouts name their images with the
`io.containerd.image.name` annotation (or a full reference in
`org.opencontainers.image.ref.name`); docker archives with `RepoTags`.
"""
from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path
from typing import Any

from engine.errors import InvalidArgument, NotFound
from engine.graph import digest as dg
from engine.graph.graph import Graph, Protection
from engine.graph.layerstream import GZIP_MAGIC, ZSTD_MAGIC
from engine.graph.model import Image, LayerRef, parse_config
from engine.graph.store import ImageRow
from engine.registry import manifest as mf
from engine.registry.reference import parse

log = logging.getLogger(__name__)
MAX_INDEX = 4 << 20
NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


class _Archive:
    def __init__(self, graph: Graph, tar: tarfile.TarFile, hold: Protection) -> None:
        self.graph = graph
        self.tar = tar
        self.hold = hold
        self.names = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}

    def read_small(self, name: str) -> bytes:
        member = self.names.get(name)
        if member is None:
            raise InvalidArgument(f"archive: {name} is missing")
        if member.size > MAX_INDEX:
            raise InvalidArgument(f"archive: {name} is too large ({member.size} bytes)")
        f = self.tar.extractfile(member)
        assert f is not None
        return f.read()

    def blob(self, digest: str, size: int | None = None) -> None:
        """Copy blobs/sha256/<hex> into the content store, verified."""
        self.hold.add([digest])
        if self.graph.content.exists(digest):
            return
        name = f"blobs/sha256/{dg.hex_of(digest)}"
        member = self.names.get(name)
        if member is None:
            raise InvalidArgument(f"archive: blob {digest} is missing")
        f = self.tar.extractfile(member)
        assert f is not None
        with self.graph.content.writer(digest, size if size is not None else member.size) as w:
            while chunk := f.read(1 << 20):
                w.write(chunk)
            w.commit()

    def file_blob(self, name: str) -> tuple[str, int]:
        """Store an arbitrary member (docker archives name layers by path), return its digest."""
        member = self.names.get(name.removeprefix("./"))
        if member is None:
            raise InvalidArgument(f"archive: {name} is missing")
        f = self.tar.extractfile(member)
        assert f is not None
        with self.graph.gc_paused():  # the digest is unknown until stored: hold GC off
            digest, size = self.graph.content.ingest(f, max_bytes=self.graph.limits.max_bytes)
            self.hold.add([digest])
        return digest, size


def _commit(graph: Graph, *, manifest: bytes, config: bytes, layers: list[tuple[str, int, str]],
            names: list[str], index: tuple[str, int] | None = None) -> Image:
    """Unpack the layers, then write the image (manifest and config already stored)."""
    diff_ids = parse_config(config).diff_ids
    if len(diff_ids) != len(layers):
        raise InvalidArgument(f"archive: {len(layers)} layers but {len(diff_ids)} diff_ids")
    chains = dg.chain_ids(diff_ids)
    refs = [LayerRef(d, s, m, diff, chain)
            for (d, s, m), diff, chain in zip(layers, diff_ids, chains, strict=True)]
    with graph.protect((), chains):
        for i, lr in enumerate(refs):
            graph.unpack(lr, refs[i - 1].chain_id if i else None)
        row = ImageRow(id=dg.of_bytes(config), manifest=dg.of_bytes(manifest),
                       manifest_size=len(manifest), index=index[0] if index else None,
                       index_size=index[1] if index else 0, config_size=len(config),
                       pulled_at=graph.clock(), refs=tuple(names), layers=tuple(refs))
        return graph.add_image(row)


def _oci(arc: _Archive) -> list[Image]:
    index = json.loads(arc.read_small("index.json"))
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidArgument("archive: index.json has no manifests")
    out = []
    for raw in index["manifests"]:
        annotations: dict[str, Any] = raw.get("annotations") or {}
        names = _oci_names(annotations)
        desc = mf.Descriptor(str(raw.get("mediaType")), dg.validate(str(raw.get("digest"))),
                             int(raw.get("size", -1)))
        arc.blob(desc.digest, desc.size)
        doc = mf.parse(arc.graph.content.read(desc.digest), desc.media_type)
        top: tuple[str, int] | None = None
        if isinstance(doc, mf.Index):
            top = (desc.digest, desc.size)
            desc = mf.select(doc, mf.host_platform())
            arc.blob(desc.digest, desc.size)
            doc = mf.parse(arc.graph.content.read(desc.digest), desc.media_type)
            if isinstance(doc, mf.Index):
                raise InvalidArgument("archive: nested image indexes are not supported")
        out.append(_import_manifest(arc, desc.digest, doc, names, top))
    return out


def _oci_names(annotations: dict[str, Any]) -> list[str]:
    for key in NAME_ANNOTATIONS:
        value = annotations.get(key)
        if isinstance(value, str) and ("/" in value or ":" in value):
            try:
                return [str(parse(value))]
            except InvalidArgument:
                continue
    return []


def _import_manifest(arc: _Archive, digest: str, doc: mf.Manifest, names: list[str],
                     top: tuple[str, int] | None) -> Image:
    arc.blob(doc.config.digest, doc.config.size)
    layers = []
    for layer in doc.layers:
        arc.blob(layer.digest, layer.size)
        layers.append((layer.digest, layer.size, layer.media_type))
    refs = list(names)
    for name in names:
        r = parse(name)
        refs.append(str(r.with_digest(top[0] if top else digest)))
    return _commit(arc.graph, manifest=arc.graph.content.read(digest),
                   config=arc.graph.content.read(doc.config.digest), layers=layers,
                   names=refs, index=top)


def _docker(arc: _Archive) -> list[Image]:
    entries = json.loads(arc.read_small("manifest.json"))
    if not isinstance(entries, list):
        raise InvalidArgument("archive: manifest.json must be a list")
    out = []
    for entry in entries:
        config = arc.read_small(str(entry.get("Config", "")).removeprefix("./"))
        config_digest = dg.of_bytes(config)
        arc.hold.add([config_digest])
        arc.graph.content.put(config)
        layers = []
        for path in entry.get("Layers") or []:
            digest, size = arc.file_blob(str(path))
            with arc.graph.content.open(digest) as f:
                head = f.read(4)
            kind = "+gzip" if head.startswith(GZIP_MAGIC) else (
                "+zstd" if head.startswith(ZSTD_MAGIC) else "")
            layers.append((digest, size, f"application/vnd.oci.image.layer.v1.tar{kind}"))
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": mf.OCI_MANIFEST,
            "config": {"mediaType": mf.CONFIG_TYPES[0], "digest": config_digest,
                       "size": len(config)},
            "layers": [{"mediaType": m, "digest": d, "size": s} for d, s, m in layers],
        }, separators=(",", ":")).encode()
        arc.hold.add([dg.of_bytes(manifest)])
        arc.graph.content.put(manifest)
        names = [str(parse(t)) for t in entry.get("RepoTags") or []]
        out.append(_commit(arc.graph, manifest=manifest, config=config, layers=layers,
                           names=names))
    return out


def load_archive(graph: Graph, path: Path) -> list[Image]:
    """Import every image in the archive at `path`; nothing is kept if an image fails."""
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by the `with tar` below)
    except FileNotFoundError:
        raise NotFound(f"archive {path} not found") from None
    except tarfile.TarError as exc:
        raise InvalidArgument(f"archive {path}: not a tar archive ({exc})") from None
    try:
        with tar, graph.protect((), ()) as hold:
            arc = _Archive(graph, tar, hold)
            if "index.json" in arc.names and "oci-layout" in arc.names:
                return _oci(arc)
            if "manifest.json" in arc.names:
                return _docker(arc)
            raise InvalidArgument(f"archive {path}: neither an OCI layout nor a docker save")
    except BaseException:
        graph.gc()
        raise
