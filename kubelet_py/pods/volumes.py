"""Pod volumes on the node: emptyDir, hostPath, configMap, secret, downwardAPI, projected.

Each volume is a directory under `<root>/pods/<uid>/volumes/<plugin>/<name>`, bind-mounted
by the runtime. Data sources are read from the API (the node authorizer allows exactly the
objects of pods bound to this node); service account tokens come from the TokenRequest API.
"""
from __future__ import annotations

import base64
import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

from kubelet_py.client.errors import ApiError, ApiUnavailable, NotFound
from kubelet_py.clock import Clock, RealClock
from kubelet_py.errors import KubeletError
from kubelet_py.node.allocatable import Allocatable
from kubelet_py.pods.atomic_writer import WriteError, write_atomically
from kubelet_py.pods.downward import DownwardError, PodPlacement, field_value, resource_value
from kubelet_py.pods.model import Pod

log = logging.getLogger(__name__)
Obj = dict[str, Any]
DEFAULT_TOKEN_SECONDS = 3607
# Upstream's token manager: a token is renewed once 80% of its lifetime has passed, and
# at the latest after 24 hours.
REFRESH_FRACTION = 0.8
REFRESH_MAX_AGE = 24 * 3600.0
REFRESH_CHECK = 10.0


class VolumeError(KubeletError):
    """A volume could not be prepared; `reason` is the container waiting reason."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason


class Api(Protocol):
    async def get(self, path: str, *, params: Any = None) -> Obj: ...

    async def create(self, path: str, body: Obj) -> Obj: ...


@dataclasses.dataclass(frozen=True)
class PreparedVolume:
    host_path: str
    read_only: bool


def pod_dir(root: Path, uid: str) -> Path:
    return root / "pods" / uid


def _field(pod: Pod, path: str) -> str:
    node = str((pod.get("spec") or {}).get("nodeName", ""))
    try:
        return field_value(pod, path, PodPlacement(node_name=node))
    except DownwardError as exc:
        raise VolumeError(str(exc)) from exc


class Volumes:
    def __init__(self, api: Api | None, *, root: Path, allocatable: Allocatable,
                 clock: Clock | None = None) -> None:
        self._api = api
        self._allocatable = allocatable
        """Defaults for resourceFieldRef limits a container does not set."""
        self._root = root
        self._clock: Clock = clock or RealClock()
        # pod uid -> (the pod, volume name -> monotonic time its token must be renewed)
        self._tokens: dict[str, tuple[Pod, dict[str, float]]] = {}

    def _need_api(self, what: str) -> Api:
        if self._api is None:
            raise VolumeError(f"{what} needs an API server (standalone mode has none)")
        return self._api

    async def _get(self, path: str, what: str, optional: bool) -> Obj | None:
        api = self._need_api(what)
        try:
            return await api.get(path)
        except NotFound:
            if optional:
                return None
            raise VolumeError(f"{what} not found") from None
        except (ApiError, ApiUnavailable) as exc:
            raise VolumeError(f"{what}: {exc}") from exc

    async def _keyed(self, pod: Pod, kind: str, src: Obj) -> dict[str, bytes]:
        ns = pod["metadata"]["namespace"]
        name = src.get("name") if kind == "configmaps" else src.get("secretName",
                                                                      src.get("name"))
        label = "configmap" if kind == "configmaps" else "secret"
        obj = await self._get(f"/api/v1/namespaces/{ns}/{kind}/{name}", f'{label} "{name}"',
                              bool(src.get("optional")))
        if obj is None:
            return {}
        data: dict[str, bytes] = {}
        if kind == "configmaps":
            data.update({k: v.encode() for k, v in (obj.get("data") or {}).items()})
            data.update({k: base64.b64decode(v)
                         for k, v in (obj.get("binaryData") or {}).items()})
        else:
            data.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
        items = src.get("items")
        if not items:
            return data
        out = {}
        for item in items:
            if item["key"] not in data:
                if src.get("optional"):
                    continue
                raise VolumeError(f'{label} "{name}" has no key {item["key"]!r}')
            out[item.get("path", item["key"])] = data[item["key"]]
        return out

    def _downward(self, pod: Pod, src: Obj) -> dict[str, bytes]:
        out = {}
        for item in src.get("items") or []:
            if "fieldRef" in item:
                out[item["path"]] = _field(pod, item["fieldRef"]["fieldPath"]).encode()
                continue
            try:
                value = resource_value(pod, None, item.get("resourceFieldRef") or {},
                                       self._allocatable)
            except DownwardError as exc:
                raise VolumeError(f"downwardAPI {item['path']}: {exc}") from exc
            out[item["path"]] = value.encode()
        return out

    async def _token(self, pod: Pod, src: Obj, dues: list[float]) -> dict[str, bytes]:
        meta = pod["metadata"]
        sa = pod["spec"].get("serviceAccountName") or "default"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [src["audience"]] if src.get("audience") else None,
                         "expirationSeconds": src.get("expirationSeconds",
                                                      DEFAULT_TOKEN_SECONDS),
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                            "name": meta["name"], "uid": meta["uid"]}}}
        path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token"
        api = self._need_api(f"service account token for {sa}")
        try:
            resp = await api.create(path, body)
        except (ApiError, ApiUnavailable) as exc:
            raise VolumeError(f"service account token for {sa}: {exc}") from exc
        ttl = float((resp.get("spec") or {}).get("expirationSeconds") or
                    src.get("expirationSeconds", DEFAULT_TOKEN_SECONDS))
        dues.append(self._clock.monotonic() + min(REFRESH_FRACTION * ttl, REFRESH_MAX_AGE))
        return {src.get("path", "token"): resp["status"]["token"].encode()}

    async def _projected(self, pod: Pod, src: Obj, dues: list[float]) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for source in src.get("sources") or []:
            if "configMap" in source:
                files.update(await self._keyed(pod, "configmaps", source["configMap"]))
            elif "secret" in source:
                files.update(await self._keyed(pod, "secrets", source["secret"]))
            elif "downwardAPI" in source:
                files.update(self._downward(pod, source["downwardAPI"]))
            elif "serviceAccountToken" in source:
                files.update(await self._token(pod, source["serviceAccountToken"], dues))
            else:
                raise VolumeError(f"projected source {sorted(source)} is not supported")
        return files

    async def prepare(self, pod: Pod) -> dict[str, PreparedVolume]:
        """Materialise every volume of the pod; VolumeError names the first it cannot."""
        base = pod_dir(self._root, pod["metadata"]["uid"]) / "volumes"
        out: dict[str, PreparedVolume] = {}
        for vol in pod["spec"].get("volumes") or []:
            name = vol["name"]
            if "emptyDir" in vol:
                if (vol["emptyDir"] or {}).get("medium") == "Memory":
                    raise VolumeError(f"volume {name}: emptyDir medium Memory is not supported")
                path = base / "kubernetes.io~empty-dir" / name
                path.mkdir(parents=True, exist_ok=True)
                os.chmod(path, 0o777)
                out[name] = PreparedVolume(str(path), False)
            elif "hostPath" in vol:
                host = Path(vol["hostPath"]["path"])
                kind = vol["hostPath"].get("type", "")
                if kind == "DirectoryOrCreate":
                    host.mkdir(parents=True, exist_ok=True)
                elif kind == "Directory" and not host.is_dir():
                    raise VolumeError(f"volume {name}: hostPath {host} is not a directory")
                out[name] = PreparedVolume(str(host), False)
            elif any(k in vol for k in ("configMap", "secret", "downwardAPI", "projected")):
                out[name] = PreparedVolume(str(await self._materialise(pod, vol, base)), True)
            else:
                kinds = sorted(k for k in vol if k != "name")
                raise VolumeError(f"volume {name}: type {', '.join(kinds)} is not supported "
                                  "by this node")
        return out

    async def _materialise(self, pod: Pod, vol: Obj, base: Path) -> Path:
        dues: list[float] = []
        plugin, files, mode = await self._files(pod, vol, dues)
        path: Path = base / plugin / str(vol["name"])
        try:
            write_atomically(path, files, mode, now=self._clock.now())
        except WriteError as exc:
            raise VolumeError(f"volume {vol['name']}: {exc}") from exc
        if dues:
            uid = pod["metadata"]["uid"]
            _, known = self._tokens.get(uid, (pod, {}))
            self._tokens[uid] = (pod, {**known, vol["name"]: min(dues)})
        return path

    async def refresh_tokens(self) -> int:
        """Rewrite the projected volumes whose service account token is due; the count."""
        now = self._clock.monotonic()
        done = 0
        for uid, (pod, dues) in list(self._tokens.items()):
            base = pod_dir(self._root, uid) / "volumes"
            for vol in pod["spec"].get("volumes") or []:
                if dues.get(vol["name"], float("inf")) > now:
                    continue
                try:
                    await self._materialise(pod, vol, base)
                    done += 1
                    log.info("pod %s: token in volume %s refreshed", uid, vol["name"])
                except VolumeError as exc:
                    log.warning("pod %s: refreshing volume %s failed: %s", uid, vol["name"],
                                exc)
        return done

    async def run_token_refresh(self) -> None:
        while True:
            await self._clock.sleep(REFRESH_CHECK)
            await self.refresh_tokens()

    async def _files(self, pod: Pod, vol: Obj,
                     dues: list[float]) -> tuple[str, dict[str, bytes], int]:
        if "configMap" in vol:
            src = vol["configMap"]
            return ("kubernetes.io~configmap", await self._keyed(pod, "configmaps", src),
                    src.get("defaultMode", 0o644))
        if "secret" in vol:
            src = vol["secret"]
            return ("kubernetes.io~secret", await self._keyed(pod, "secrets", src),
                    src.get("defaultMode", 0o644))
        if "downwardAPI" in vol:
            src = vol["downwardAPI"]
            return ("kubernetes.io~downward-api", self._downward(pod, src),
                    src.get("defaultMode", 0o644))
        src = vol["projected"]
        return ("kubernetes.io~projected", await self._projected(pod, src, dues),
                src.get("defaultMode", 0o644))

    def cleanup(self, uid: str) -> None:
        self._tokens.pop(uid, None)
        shutil.rmtree(pod_dir(self._root, uid), ignore_errors=True)
