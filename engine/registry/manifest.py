"""OCI / Docker schema-2 manifests and indexes: strict parsing and platform selection.

A document must say what it is exactly once: the HTTP Content-Type and the `mediaType`
field, when both are present, must agree, and a document shaped like both a manifest and
an index is refused (the OCI image-spec's guidance against ambiguous documents). Schema 1,
artifacts and unknown layer types are refused with InvalidArgument.
"""
from __future__ import annotations

import dataclasses
import json
import platform as pyplatform
from typing import Any

from engine.errors import InvalidArgument
from engine.graph import digest as dg
from engine.registry.errors import PlatformNotFound

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
CONFIG_TYPES = ("application/vnd.oci.image.config.v1+json",
                "application/vnd.docker.container.image.v1+json")
LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
MAX_MANIFEST = 4 << 20


@dataclasses.dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclasses.dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None


@dataclasses.dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclasses.dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


_ARCH = {"x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", "v8"),
         "arm64": ("arm64", "v8"), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
         "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", "")}


def host_platform() -> Platform:
    arch, variant = _ARCH.get(pyplatform.machine(), (pyplatform.machine(), ""))
    return Platform("linux", arch, variant)


def _descriptor(raw: Any, what: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{what}: descriptor must be an object")
    media, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
    if not isinstance(media, str) or not isinstance(digest, str):
        raise InvalidArgument(f"{what}: descriptor needs mediaType and digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"{what}: descriptor {digest} has no valid size")
    dg.validate(digest)
    plat = None
    if isinstance(raw.get("platform"), dict):
        p = raw["platform"]
        plat = Platform(str(p.get("os", "")), str(p.get("architecture", "")),
                        str(p.get("variant", "")))
    return Descriptor(media, digest, size, plat)


def parse(data: bytes, content_type: str | None) -> Manifest | Index:
    """Parse a manifest or index document, refusing anything ambiguous or unsupported."""
    if len(data) > MAX_MANIFEST:
        raise InvalidArgument(f"manifest of {len(data)} bytes exceeds {MAX_MANIFEST}")
    try:
        doc = json.loads(data)
    except ValueError:
        raise InvalidArgument("manifest is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("manifest must be a JSON object")
    ctype = (content_type or "").split(";")[0].strip()
    if ctype in ("", "application/json", "application/octet-stream", "text/plain"):
        ctype = ""
    field = doc.get("mediaType")
    if ctype and field and ctype != field:
        raise InvalidArgument(f"manifest says mediaType {field!r} but was served as {ctype!r}")
    if "manifests" in doc and ("layers" in doc or "config" in doc):
        raise InvalidArgument("ambiguous document: has both `manifests` and `layers`/`config`")
    media = ctype or field or (OCI_INDEX if "manifests" in doc else OCI_MANIFEST)
    if doc.get("schemaVersion") != 2:
        raise InvalidArgument(f"unsupported manifest schemaVersion {doc.get('schemaVersion')!r}")
    if media in INDEX_TYPES:
        if not isinstance(doc.get("manifests"), list):
            raise InvalidArgument("image index without a `manifests` list")
        return Index(media, tuple(_descriptor(m, "index") for m in doc["manifests"]))
    if media not in MANIFEST_TYPES:
        raise InvalidArgument(f"unsupported manifest media type {media!r}")
    if not isinstance(doc.get("layers"), list):
        raise InvalidArgument("image manifest without a `layers` list")
    config = _descriptor(doc.get("config"), "manifest config")
    if config.media_type not in CONFIG_TYPES:
        raise InvalidArgument(f"not a container image: config media type {config.media_type!r}")
    layers = tuple(_descriptor(layer, "manifest layer") for layer in doc["layers"])
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise InvalidArgument(f"unsupported layer media type {layer.media_type!r}")
    return Manifest(media, config, layers)


def select(index: Index, want: Platform) -> Descriptor:
    """The best manifest for `want`: same os/arch, exact variant first, then no variant."""
    best: tuple[int, Descriptor] | None = None
    for desc in index.manifests:
        p = desc.platform
        if p is None or p.os != want.os or p.architecture != want.architecture:
            continue
        if desc.media_type not in MANIFEST_TYPES + INDEX_TYPES:
            continue
        if p.variant == want.variant:
            rank = 0
        elif not p.variant or not want.variant:
            rank = 1
        else:
            continue
        if best is None or rank < best[0]:
            best = (rank, desc)
    if best is None:
        have = ", ".join(str(d.platform) for d in index.manifests if d.platform) or "none"
        raise PlatformNotFound(f"image index has no manifest for {want} (it has: {have})")
    return best[1]
