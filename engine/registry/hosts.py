"""Per-registry-host configuration: mirrors, plain-HTTP (insecure) registries, CA files.

The file is JSON (or YAML) shaped
`{host: {endpoint: [url, ...], insecure: bool, ca: path, upstream: bool}}`, the same idea as
containerd's hosts.toml. A pull from `host` tries each `endpoint` (mirror) in order and then
`host` itself, unless `upstream: false` (mirrors only: nothing leaves for the real host).
`insecure` means plain HTTP (or no TLS verification for an explicit https:// endpoint).
An endpoint given as a bare `host:port` inherits the TLS settings of its own entry if it
has one; `http://` means plain HTTP.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from engine.errors import InvalidArgument

DOCKER_HUB_ENDPOINT = "registry-1.docker.io"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    scheme: str  # http or https
    host: str  # host[:port]
    verify_tls: bool = True
    ca_file: str | None = None
    mirror: bool = False

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"


@dataclasses.dataclass(frozen=True)
class HostConfig:
    endpoints: tuple[str, ...] = ()
    insecure: bool = False
    ca: str | None = None
    upstream: bool = True


@dataclasses.dataclass(frozen=True)
class Hosts:
    hosts: dict[str, HostConfig] = dataclasses.field(default_factory=dict)

    def endpoints(self, registry: str) -> list[Endpoint]:
        """Where to fetch `registry`'s content from, in order (mirrors first)."""
        cfg = self.hosts.get(registry, HostConfig())
        out = [self._endpoint(url, mirror=True) for url in cfg.endpoints]
        if cfg.upstream or not out:
            upstream = DOCKER_HUB_ENDPOINT if registry == "docker.io" else registry
            out.append(self._endpoint(upstream, mirror=False, own=cfg))
        return out

    def _endpoint(self, url: str, *, mirror: bool, own: HostConfig | None = None) -> Endpoint:
        scheme, sep, host = url.partition("://")
        if not sep:
            scheme, host = "", url
        host = host.rstrip("/")
        cfg = own or self.hosts.get(host, HostConfig())
        if not scheme:
            scheme = "http" if cfg.insecure else "https"
        if scheme not in ("http", "https"):
            raise InvalidArgument(f"registry endpoint {url!r}: scheme must be http or https")
        return Endpoint(scheme=scheme, host=host, verify_tls=not cfg.insecure,
                        ca_file=cfg.ca, mirror=mirror)


def parse_hosts(doc: Any) -> Hosts:
    if doc is None:
        return Hosts()
    if not isinstance(doc, dict):
        raise InvalidArgument("registry hosts config must be a mapping of host -> settings")
    out: dict[str, HostConfig] = {}
    for host, raw in doc.items():
        if not isinstance(raw, dict):
            raise InvalidArgument(f"registry hosts config: {host!r} must map to a mapping")
        endpoint = raw.get("endpoint", [])
        if isinstance(endpoint, str):
            endpoint = [endpoint]
        if not isinstance(endpoint, list) or not all(isinstance(e, str) for e in endpoint):
            raise InvalidArgument(f"registry hosts config: {host!r}.endpoint must be a list")
        unknown = set(raw) - {"endpoint", "insecure", "ca", "upstream"}
        if unknown:
            raise InvalidArgument(f"registry hosts config: {host!r}: unknown keys {unknown}")
        out[str(host)] = HostConfig(endpoints=tuple(endpoint), insecure=bool(raw.get("insecure")),
                                    ca=raw.get("ca"), upstream=bool(raw.get("upstream", True)))
    return Hosts(out)


def load_hosts(path: Path | None) -> Hosts:
    if path is None or not path.exists():
        return Hosts()
    text = path.read_text()
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"registry hosts config {path}: {exc}") from None
    return parse_hosts(doc)
