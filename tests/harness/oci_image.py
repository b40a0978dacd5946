"""Image configs, manifests and indexes, in the OCI and the Docker schema-2 formats.

Documents are serialised as compact JSON with sorted keys, so that a given image always
has the same manifest digest. Field names follow the OCI image spec (config: `architecture`,
`os`, `config`, `rootfs.diff_ids`, `history`; manifest: `schemaVersion`, `mediaType`,
`config`, `layers`; index: `manifests` with `platform`), which Docker's schema 2 shares.
"""
from __future__ import annotations

import json
import platform as _platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tests.harness.oci_layer import Compression, Layer, sha256_digest

# Every config and history entry claims this creation time (matches the layer mtimes).
CREATED = "2000-01-01T00:00:00Z"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"


class Format(Enum):
    OCI = "oci"
    DOCKER = "docker"


def host_arch() -> str:
    """The GOARCH name of this machine, as image platforms spell it."""
    machine = _platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
            "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)


def canonical_json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image config (`config` in the JSON)."""

    user: str = ""
    env: tuple[str, ...] = (DEFAULT_PATH,)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ("sh",)
    working_dir: str = ""
    volumes: tuple[str, ...] = ()
    exposed_ports: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    stop_signal: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Env": list(self.env)}
        if self.user:
            out["User"] = self.user
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        return out


@dataclass(frozen=True)
class Image:
    """One single-platform image: its layers, config blob and manifest blob."""

    layers: tuple[Layer, ...]
    config: Blob
    manifest: Blob
    format: Format
    architecture: str
    os: str = "linux"

    def blobs(self) -> list[Blob | Layer]:
        return [*self.layers, self.config]

    @property
    def uncompressed_size(self) -> int:
        return sum(layer.tar_size for layer in self.layers)


def layer_media_type(layer: Layer, fmt: Format) -> str:
    if fmt is Format.OCI:
        return OCI_LAYER + layer.compression.value
    if layer.compression is Compression.GZIP:
        return DOCKER_LAYER_GZIP
    if layer.compression is Compression.NONE:
        return DOCKER_LAYER
    raise ValueError("Docker schema 2 has no zstd layer media type; use the OCI format")


@dataclass(frozen=True)
class History:
    created_by: str
    empty_layer: bool = False
    comment: str = ""


def build_image(layers: Sequence[Layer], config: ImageConfig, *, fmt: Format = Format.OCI,
                architecture: str | None = None, history: Sequence[History] = (),
                annotations: Mapping[str, str] | None = None) -> Image:
    """Assemble config and manifest. `history` may add empty-layer steps (USER, ENV, ...);
    one non-empty history entry per layer is derived from each layer's `created_by`."""
    arch = architecture or host_arch()
    steps: list[dict[str, Any]] = []
    for layer in layers:
        steps.append({"created": CREATED, "created_by": layer.created_by or "layer"})
    for extra in history:
        if not extra.empty_layer:
            raise ValueError("extra history entries must be empty_layer steps")
        item: dict[str, Any] = {"created": CREATED, "created_by": extra.created_by,
                                "empty_layer": True}
        if extra.comment:
            item["comment"] = extra.comment
        steps.append(item)
    config_doc: dict[str, Any] = {
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": config.to_json(),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": steps,
    }
    config_blob = Blob(OCI_CONFIG if fmt is Format.OCI else DOCKER_CONFIG,
                       canonical_json(config_doc))
    manifest_doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if fmt is Format.OCI else DOCKER_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [{"mediaType": layer_media_type(layer, fmt), "digest": layer.digest,
                    "size": layer.size} for layer in layers],
    }
    if annotations:
        if fmt is not Format.OCI:
            raise ValueError("annotations are an OCI manifest field")
        manifest_doc["annotations"] = dict(annotations)
    manifest = Blob(manifest_doc["mediaType"], canonical_json(manifest_doc))
    return Image(layers=tuple(layers), config=config_blob, manifest=manifest, format=fmt,
                 architecture=arch)


@dataclass(frozen=True)
class Index:
    """A multi-platform index (OCI image index or Docker manifest list)."""

    images: tuple[Image, ...]
    blob: Blob
    format: Format = field(default=Format.OCI)


def build_index(images: Sequence[Image], *, fmt: Format = Format.OCI) -> Index:
    if not images:
        raise ValueError("an index needs at least one image")
    for image in images:
        if image.format is not fmt:
            raise ValueError(f"a {fmt.value} index can only list {fmt.value} manifests")
    media_type = OCI_INDEX if fmt is Format.OCI else DOCKER_LIST
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [image.manifest.descriptor(platform={"architecture": image.architecture,
                                                           "os": image.os})
                      for image in images],
    }
    return Index(images=tuple(images), blob=Blob(media_type, canonical_json(doc)),
                 format=fmt)
