"""Registry credentials for a pull from the pod's imagePullSecrets (dockerconfigjson)."""
from __future__ import annotations

import base64
import json
import logging
from typing import Any, Protocol

from cri.api import runtime_pb2 as pb
from kubelet_py.client.errors import ApiError, ApiUnavailable
from kubelet_py.pods.model import Pod

log = logging.getLogger(__name__)
DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


class Api(Protocol):
    async def get(self, path: str, *, params: Any = None) -> dict[str, Any]: ...


def registry_of(image: str) -> str:
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _host(key: str) -> str:
    key = key.removeprefix("https://").removeprefix("http://")
    host = key.split("/", 1)[0]
    return "docker.io" if host in DOCKER_HUB else host


def auth_from_dockerconfig(doc: dict[str, Any], registry: str) -> pb.AuthConfig | None:
    """The entry of a dockerconfigjson (`auths` or legacy dockercfg) for `registry`."""
    auths = doc.get("auths", doc)
    for key, entry in auths.items():
        if _host(key) != registry or not isinstance(entry, dict):
            continue
        user, password = entry.get("username", ""), entry.get("password", "")
        if entry.get("auth") and not user:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        return pb.AuthConfig(username=user, password=password, server_address=registry,
                             identity_token=entry.get("identitytoken", ""),
                             registry_token=entry.get("registrytoken", ""))
    return None


class SecretPullAuth:
    def __init__(self, api: Api | None) -> None:
        self._api = api

    async def auth_for(self, pod: Pod, image: str) -> pb.AuthConfig | None:
        if self._api is None:
            return None
        registry = registry_of(image)
        ns = pod["metadata"]["namespace"]
        for ref in pod["spec"].get("imagePullSecrets") or []:
            try:
                secret = await self._api.get(f"/api/v1/namespaces/{ns}/secrets/{ref['name']}")
            except (ApiError, ApiUnavailable) as exc:
                log.warning("imagePullSecret %s/%s: %s", ns, ref.get("name"), exc)
                continue
            data = secret.get("data") or {}
            raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
            if not raw:
                continue
            try:
                doc = json.loads(base64.b64decode(raw))
            except ValueError:
                log.warning("imagePullSecret %s/%s is not valid JSON", ns, ref["name"])
                continue
            found = auth_from_dockerconfig(doc, registry)
            if found is not None:
                return found
        return None
