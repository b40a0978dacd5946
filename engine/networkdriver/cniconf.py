"""Loading the network configuration list the way CNI runtimes do (first file, sorted)."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.errors import InvalidArgument, NotFound
from engine.networkdriver.plugins import spec

EXTENSIONS = (".conflist", ".conf", ".json")


@dataclasses.dataclass(frozen=True)
class NetworkConfigList:
    path: str
    name: str
    cni_version: str
    plugins: tuple[Mapping[str, Any], ...]
    disable_check: bool = False
    disable_gc: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"cniVersion": self.cni_version, "name": self.name,
                "disableCheck": self.disable_check, "disableGC": self.disable_gc,
                "plugins": [dict(p) for p in self.plugins]}


def _flag(raw: Mapping[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def pick_version(raw: Mapping[str, Any]) -> str:
    """cniVersions (1.1.0): the highest version we support; else cniVersion."""
    versions = raw.get("cniVersions")
    if isinstance(versions, list) and versions:
        ours = [v for v in versions if v in spec.SUPPORTED_VERSIONS]
        if not ours:
            raise InvalidArgument(f"no supported version in cniVersions {versions}")
        return str(max(ours, key=spec.version_tuple))
    version = raw.get("cniVersion")
    if version not in spec.SUPPORTED_VERSIONS:
        raise InvalidArgument(f"unsupported cniVersion {version!r}; "
                              f"supported: {', '.join(spec.SUPPORTED_VERSIONS)}")
    return str(version)


def parse(data: bytes, *, path: str = "<memory>") -> NetworkConfigList:
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path}: malformed JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{path}: a network configuration must be a JSON object")
    if "plugins" in raw:
        plugins = raw["plugins"]
        if not isinstance(plugins, list) or not plugins:
            raise InvalidArgument(f"{path}: plugins must be a non-empty list")
    elif "type" in raw:
        plugins = [{k: v for k, v in raw.items() if k not in ("cniVersion", "name")}]
    else:
        raise InvalidArgument(f"{path}: neither a conflist (plugins) nor a plugin config (type)")
    try:
        name = spec.validate_network_name(raw.get("name"))
        for p in plugins:
            if not isinstance(p, dict):
                raise InvalidArgument(f"{path}: each plugin must be a JSON object")
            spec.validate_plugin_type(p.get("type"))
    except spec.CNIError as err:
        raise InvalidArgument(f"{path}: {err}") from err
    try:
        version = pick_version(raw)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc}") from exc
    return NetworkConfigList(path=path, name=name, cni_version=version,
                             plugins=tuple(plugins), disable_check=_flag(raw, "disableCheck"),
                             disable_gc=_flag(raw, "disableGC"))


def load_dir(conf_dir: Path) -> NetworkConfigList:
    """The first configuration file in ``conf_dir`` by name; NotFound when there is none."""
    try:
        files = sorted(p for p in conf_dir.iterdir()
                       if p.suffix in EXTENSIONS and p.is_file())
    except FileNotFoundError:
        files = []
    if not files:
        raise NotFound(f"no network config found in {conf_dir}")
    return parse(files[0].read_bytes(), path=str(files[0]))
