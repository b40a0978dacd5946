"""Configs, manifests and indexes carry the fields the OCI image spec requires."""
from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import oci_image as oci
from tests.harness.oci_layer import Compression, build_layer, directory, file

DIGEST_PREFIX = "sha256:"


def _layers() -> list[Any]:
    return [build_layer([directory("a"), file("a/x", b"x")], created_by="ADD a"),
            build_layer([file("b", b"b" * 100)], compression=Compression.ZSTD, created_by="ADD b")]


def _check_descriptor(desc: dict[str, Any]) -> None:
    assert set(desc) >= {"mediaType", "digest", "size"}
    assert desc["digest"].startswith(DIGEST_PREFIX) and len(desc["digest"]) == 71
    assert isinstance(desc["size"], int) and desc["size"] > 0


def test_oci_config_has_required_fields_and_matching_diff_ids() -> None:
    layers = _layers()
    cfg = oci.ImageConfig(user="1000:1000", entrypoint=("/bin/echo",), cmd=("hi",),
                          working_dir="/srv", volumes=("/data",), env=("A=1",))
    image = oci.build_image(layers, cfg, architecture="amd64",
                            history=(oci.History("USER 1000", empty_layer=True),))
    doc = json.loads(image.config.data)
    assert doc["architecture"] == "amd64" and doc["os"] == "linux"
    assert doc["rootfs"] == {"type": "layers", "diff_ids": [la.diff_id for la in layers]}
    non_empty = [h for h in doc["history"] if not h.get("empty_layer")]
    assert len(non_empty) == len(layers)
    assert doc["config"] == {"User": "1000:1000", "Entrypoint": ["/bin/echo"], "Cmd": ["hi"],
                             "WorkingDir": "/srv", "Volumes": {"/data": {}}, "Env": ["A=1"]}
    assert image.config.media_type == oci.OCI_CONFIG


def test_oci_manifest_shape_and_layer_media_types() -> None:
    layers = _layers()
    image = oci.build_image(layers, oci.ImageConfig(), annotations={"k": "v"})
    doc = json.loads(image.manifest.data)
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == oci.OCI_MANIFEST
    _check_descriptor(doc["config"])
    assert doc["config"]["digest"] == image.config.digest
    assert doc["config"]["mediaType"] == oci.OCI_CONFIG
    assert [d["mediaType"] for d in doc["layers"]] == [oci.OCI_LAYER + "+gzip",
                                                       oci.OCI_LAYER + "+zstd"]
    for desc, layer in zip(doc["layers"], layers, strict=True):
        _check_descriptor(desc)
        assert (desc["digest"], desc["size"]) == (layer.digest, layer.size)
    assert doc["annotations"] == {"k": "v"}
    assert image.uncompressed_size == sum(la.tar_size for la in layers)


def test_building_twice_gives_the_same_manifest_digest() -> None:
    first = oci.build_image(_layers(), oci.ImageConfig())
    second = oci.build_image(_layers(), oci.ImageConfig())
    assert first.manifest.digest == second.manifest.digest
    assert first.manifest.data == second.manifest.data


def test_docker_schema2_uses_docker_media_types_and_refuses_zstd() -> None:
    gz = build_layer([file("a", b"a")])
    plain = build_layer([file("b", b"b")], compression=Compression.NONE)
    image = oci.build_image([gz, plain], oci.ImageConfig(), fmt=oci.Format.DOCKER)
    doc = json.loads(image.manifest.data)
    assert doc["mediaType"] == oci.DOCKER_MANIFEST
    assert doc["config"]["mediaType"] == oci.DOCKER_CONFIG
    assert [d["mediaType"] for d in doc["layers"]] == [oci.DOCKER_LAYER_GZIP, oci.DOCKER_LAYER]
    with pytest.raises(ValueError, match="zstd"):
        oci.build_image(_layers(), oci.ImageConfig(), fmt=oci.Format.DOCKER)


@pytest.mark.parametrize("fmt", list(oci.Format))
def test_index_lists_each_manifest_with_its_platform(fmt: oci.Format) -> None:
    gz = build_layer([file("a", b"a")])
    images = [oci.build_image([gz], oci.ImageConfig(), fmt=fmt, architecture=arch)
              for arch in ("amd64", "arm64")]
    index = oci.build_index(images, fmt=fmt)
    doc = json.loads(index.blob.data)
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == (oci.OCI_INDEX if fmt is oci.Format.OCI else oci.DOCKER_LIST)
    for desc, image in zip(doc["manifests"], images, strict=True):
        _check_descriptor(desc)
        assert desc["digest"] == image.manifest.digest
        assert desc["mediaType"] == image.manifest.media_type
        assert desc["platform"] == {"architecture": image.architecture, "os": "linux"}


def test_index_refuses_mixed_formats_and_emptiness() -> None:
    gz = build_layer([file("a", b"a")])
    with pytest.raises(ValueError, match="can only list"):
        oci.build_index([oci.build_image([gz], oci.ImageConfig(), fmt=oci.Format.DOCKER)])
    with pytest.raises(ValueError, match="at least one"):
        oci.build_index([])
