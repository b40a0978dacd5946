"""Values the Graph hands out: images, their runtime config, layers."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from engine.errors import InvalidArgument
from engine.graph import digest as dg


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config a runtime needs (`config` in the JSON)."""

    os: str = "linux"
    architecture: str = ""
    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""
    created: str = ""
    diff_ids: tuple[str, ...] = ()

    def cri_user(self) -> tuple[int | None, str]:
        """(uid, username) as the CRI's Image message wants them: `1000:50` -> (1000, ""),
        `www-data:users` -> (None, "www-data"), "" -> (None, "")."""
        user = self.user.split(":", 1)[0]
        return (int(user), "") if user.isdigit() else (None, user)


def _strs(v: Any, what: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise InvalidArgument(f"image config: {what} must be a list of strings")
    return tuple(v)


def parse_config(data: bytes) -> ImageConfig:
    """Parse and check an image config: rootfs type `layers` and valid diff IDs."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise InvalidArgument("image config is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("image config must be a JSON object")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidArgument("image config: rootfs.type must be \"layers\"")
    diff_ids = _strs(rootfs.get("diff_ids"), "rootfs.diff_ids")
    for d in diff_ids:
        dg.validate(d)
    cfg = doc.get("config") or {}
    if not isinstance(cfg, dict):
        raise InvalidArgument("image config: `config` must be an object")
    labels = cfg.get("Labels") or {}
    if not isinstance(labels, dict):
        raise InvalidArgument("image config: Labels must be an object")
    return ImageConfig(
        os=str(doc.get("os", "")), architecture=str(doc.get("architecture", "")),
        user=str(cfg.get("User") or ""), env=_strs(cfg.get("Env"), "Env"),
        entrypoint=_strs(cfg.get("Entrypoint"), "Entrypoint"), cmd=_strs(cfg.get("Cmd"), "Cmd"),
        working_dir=str(cfg.get("WorkingDir") or ""),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        exposed_ports=tuple(sorted(cfg.get("ExposedPorts") or {})),
        volumes=tuple(sorted(cfg.get("Volumes") or {})),
        stop_signal=str(cfg.get("StopSignal") or ""), created=str(doc.get("created") or ""),
        diff_ids=diff_ids)


@dataclasses.dataclass(frozen=True)
class LayerRef:
    """One layer of one image: its blob (as in the manifest) and where it sits in the graph."""

    blob: str
    blob_size: int
    media_type: str
    diff_id: str
    chain_id: str


@dataclasses.dataclass(frozen=True)
class Image:
    id: str  # the config digest
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int  # manifest + config + layer blobs, as stored
    manifest: str  # digest of the platform manifest
    index: str | None  # digest of the index it was chosen from, if any
    layers: tuple[LayerRef, ...]
    config: ImageConfig
    pulled_at: float

    @property
    def top_layer(self) -> str | None:
        """The chain ID a container rootfs is prepared on (None: an image without layers)."""
        return self.layers[-1].chain_id if self.layers else None


@dataclasses.dataclass(frozen=True)
class Layer:
    chain_id: str
    parent: str | None
    diff_id: str
    size: int  # unpacked bytes of file data
    entries: int
    images: tuple[str, ...]  # image IDs using this layer
