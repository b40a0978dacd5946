"""OCI layout and docker-save archives written from our images."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile

from tests.harness.oci_image import Image, ImageConfig, build_image, build_index
from tests.harness.oci_layer import Compression, build_layer, file
from tests.harness.oci_layout import REF_NAME, docker_archive, layout_files, layout_tar


def _image() -> Image:
    layers = [build_layer([file("a", b"a")]),
              build_layer([file("z", b"z")], compression=Compression.ZSTD)]
    return build_image(layers, ImageConfig())


def test_layout_has_marker_index_and_every_blob_under_its_digest() -> None:
    image = _image()
    index = build_index([image])
    files = layout_files([("v1", image), ("multi", index)])
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/"):
            assert name == "blobs/sha256/" + hashlib.sha256(data).hexdigest()
    top = json.loads(files["index.json"])["manifests"]
    assert [(d["annotations"][REF_NAME], d["digest"]) for d in top] == [
        ("v1", image.manifest.digest), ("multi", index.blob.digest)]
    assert f"blobs/sha256/{image.layers[1].digest[7:]}" in files
    assert layout_tar([("v1", image)]) == layout_tar([("v1", image)])


def test_docker_archive_stores_uncompressed_layers_named_by_diff_id() -> None:
    image = _image()
    with tarfile.open(fileobj=io.BytesIO(docker_archive(image, ["x/y:1"]))) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest[0]["RepoTags"] == ["x/y:1"]
        assert manifest[0]["Config"] == image.config.digest[7:] + ".json"
        for path, layer in zip(manifest[0]["Layers"], image.layers, strict=True):
            data = tar.extractfile(path).read()  # type: ignore[union-attr]
            assert "sha256:" + hashlib.sha256(data).hexdigest() == layer.diff_id
