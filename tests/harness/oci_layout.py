"""Offline image archives, for load/save tests: an OCI image layout (directory or tar) and
a `docker save` archive (the classic layout: manifest.json, <config>.json, <n>/layer.tar).

OCI layout facts used: an ``oci-layout`` file with ``imageLayoutVersion`` 1.0.0, blobs under
``blobs/<alg>/<hex>``, and ``index.json`` whose descriptors carry the
``org.opencontainers.image.ref.name`` annotation for their tag.
"""
from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import zstandard

from tests.harness.oci_image import OCI_INDEX, Image, Index, canonical_json
from tests.harness.oci_layer import FIXED_MTIME, Compression, Layer

REF_NAME = "org.opencontainers.image.ref.name"


def _blobs(item: Image | Index) -> Iterable[tuple[str, bytes]]:
    images = [item] if isinstance(item, Image) else list(item.images)
    if isinstance(item, Index):
        yield item.blob.digest, item.blob.data
    for image in images:
        yield image.manifest.digest, image.manifest.data
        yield image.config.digest, image.config.data
        for layer in image.layers:
            yield layer.digest, layer.blob


def layout_files(tagged: Sequence[tuple[str, Image | Index]]) -> dict[str, bytes]:
    """Path -> content of an OCI layout holding each (tag, image or index)."""
    files: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    manifests = []
    for tag, item in tagged:
        for digest, data in _blobs(item):
            algorithm, _, hexdigest = digest.partition(":")
            files[f"blobs/{algorithm}/{hexdigest}"] = data
        top = item.manifest if isinstance(item, Image) else item.blob
        manifests.append(top.descriptor(annotations={REF_NAME: tag}))
    files["index.json"] = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                          "manifests": manifests})
    return files


def write_layout_dir(directory: Path, tagged: Sequence[tuple[str, Image | Index]]) -> Path:
    for name, data in layout_files(tagged).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return directory


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), FIXED_MTIME, 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return out.getvalue()


def layout_tar(tagged: Sequence[tuple[str, Image | Index]]) -> bytes:
    """The OCI layout as one uncompressed tar (what `enginectl load` reads)."""
    return _tar(layout_files(tagged))


def _uncompressed(layer: Layer) -> bytes:
    if layer.compression is Compression.GZIP:
        return gzip.decompress(layer.blob)
    if layer.compression is Compression.ZSTD:
        return zstandard.ZstdDecompressor().decompressobj().decompress(layer.blob)
    return layer.blob


def docker_archive(image: Image, repo_tags: Sequence[str]) -> bytes:
    """A classic `docker save` tar of one image: layers stored uncompressed, named by
    their diff_id, and manifest.json listing Config, RepoTags and Layers."""
    config_name = image.config.digest.partition(":")[2] + ".json"
    files: dict[str, bytes] = {config_name: image.config.data}
    layer_paths = []
    for layer in image.layers:
        path = f"{layer.diff_id.partition(':')[2]}/layer.tar"
        files[path] = _uncompressed(layer)
        layer_paths.append(path)
    manifest = [{"Config": config_name, "RepoTags": list(repo_tags), "Layers": layer_paths}]
    files["manifest.json"] = json.dumps(manifest).encode()
    return _tar(files)
