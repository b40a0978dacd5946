"""Pod volumes on the node: emptyDir, hostPath, configMap, secret, downwardAPI, projected.

Each volume is a directory under `<root>/pods/<uid>/volumes/<plugin>/<name>`, bind-mounted
by the runtime. Data sources are read from the API (the node authorizer allows exactly the
objects of pods bound to this node); service account tokens come from the TokenRequest API.
"""
from __future__ import annotations

import base64
import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

from kubelet_py.client.errors import ApiError, ApiUnavailable, NotFound
from kubelet_py.errors import KubeletError
from kubelet_py.pods.model import Pod

Obj = dict[str, Any]
DEFAULT_TOKEN_SECONDS = 3607


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
    meta = pod["metadata"]
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta.get(path.split(".")[1], ""))
    if path.startswith("metadata.labels['") or path.startswith("metadata.annotations['"):
        kind, _, key = path[len("metadata."):].partition("['")
        return str((meta.get(kind) or {}).get(key.rstrip("']"), ""))
    if path == "spec.nodeName":
        return str(pod["spec"].get("nodeName", ""))
    if path == "spec.serviceAccountName":
        return str(pod["spec"].get("serviceAccountName", ""))
    raise VolumeError(f"fieldRef {path} is not supported")


def _write(directory: Path, files: dict[str, bytes], mode: int) -> None:
    """Write the files in a fresh directory, then swap it in (readers never see a mix)."""
    tmp = directory.with_name(f".{directory.name}.new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for rel, data in files.items():
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise VolumeError(f"volume path {rel!r} escapes the volume")
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.chmod(target, mode)
    old = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


class Volumes:
    def __init__(self, api: Api | None, *, root: Path) -> None:
        self._api = api
        self._root = root

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
            if "fieldRef" not in item:
                raise VolumeError("downwardAPI resourceFieldRef is not supported")
            out[item["path"]] = _field(pod, item["fieldRef"]["fieldPath"]).encode()
        return out

    async def _token(self, pod: Pod, src: Obj) -> dict[str, bytes]:
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
        return {src.get("path", "token"): resp["status"]["token"].encode()}

    async def _projected(self, pod: Pod, src: Obj) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for source in src.get("sources") or []:
            if "configMap" in source:
                files.update(await self._keyed(pod, "configmaps", source["configMap"]))
            elif "secret" in source:
                files.update(await self._keyed(pod, "secrets", source["secret"]))
            elif "downwardAPI" in source:
                files.update(self._downward(pod, source["downwardAPI"]))
            elif "serviceAccountToken" in source:
                files.update(await self._token(pod, source["serviceAccountToken"]))
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
                plugin, files, mode = await self._files(pod, vol)
                path = base / plugin / name
                _write(path, files, mode)
                out[name] = PreparedVolume(str(path), True)
            else:
                kinds = sorted(k for k in vol if k != "name")
                raise VolumeError(f"volume {name}: type {', '.join(kinds)} is not supported "
                                  "by this node")
        return out

    async def _files(self, pod: Pod, vol: Obj) -> tuple[str, dict[str, bytes], int]:
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
        return ("kubernetes.io~projected", await self._projected(pod, src),
                src.get("defaultMode", 0o644))

    def cleanup(self, uid: str) -> None:
        shutil.rmtree(pod_dir(self._root, uid), ignore_errors=True)
