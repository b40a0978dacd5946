"""A container's environment as the upstream kubelet builds it.

`envFrom` first (ConfigMaps and Secrets, with prefix, in order, later ones winning), then
`env` in order: a value with its `$(VAR)` references expanded against what is defined so
far, or a `valueFrom` source (configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef).
A missing object or key that is not optional is an EnvError (CreateContainerConfigError).
"""
from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from kubelet_py.client.errors import ApiError, ApiUnavailable, NotFound
from kubelet_py.errors import KubeletError
from kubelet_py.node.allocatable import Allocatable
from kubelet_py.pods.downward import DownwardError, PodPlacement, field_value, resource_value
from kubelet_py.pods.expansion import expand, lookup_in
from kubelet_py.pods.model import Pod

Obj = dict[str, Any]


class EnvError(KubeletError):
    """The environment cannot be built; the message is the container's waiting message."""


class ObjectGetter(Protocol):
    async def get(self, path: str, *, params: Any = None) -> Obj: ...


@dataclasses.dataclass(frozen=True)
class Environment:
    env: tuple[tuple[str, str], ...]
    """Name and value, in the order the container gets them."""
    skipped: tuple[str, ...] = ()
    """envFrom keys dropped as invalid names (each an InvalidEnvironmentVariableNames event)."""

    def as_dict(self) -> dict[str, str]:
        return dict(self.env)


def valid_name(name: str) -> bool:
    """Relaxed validation (GA since 1.34): printable ASCII other than '=', not empty."""
    return bool(name) and all(32 <= ord(ch) < 127 and ch != "=" for ch in name)


_KINDS = {"configmaps": "configmap", "secrets": "secret"}


class _Objects:
    """ConfigMaps and Secrets of one namespace, each fetched at most once per build."""

    def __init__(self, api: ObjectGetter | None, namespace: str) -> None:
        self._api = api
        self._ns = namespace
        self._cache: dict[tuple[str, str], dict[str, str] | None] = {}

    async def data(self, kind: str, name: str, *, optional: bool) -> dict[str, str] | None:
        """The object's string data; None when it is optional and absent."""
        key = (kind, name)
        if key not in self._cache:
            self._cache[key] = await self._fetch(kind, name)
        found = self._cache[key]
        if found is None and not optional:
            raise EnvError(f'{_KINDS[kind]} "{name}" not found')
        return found

    async def _fetch(self, kind: str, name: str) -> dict[str, str] | None:
        label = "configMap" if kind == "configmaps" else "secret"
        if self._api is None:
            raise EnvError(f"couldn't get {label} {self._ns}/{name}, no kubeClient defined")
        try:
            obj = await self._api.get(f"/api/v1/namespaces/{self._ns}/{kind}/{name}")
        except NotFound:
            return None
        except (ApiError, ApiUnavailable) as exc:
            raise EnvError(f"couldn't get {label} {self._ns}/{name}: {exc}") from exc
        data = obj.get("data") or {}
        if kind == "configmaps":
            return {k: str(v) for k, v in data.items()}
        return {k: base64.b64decode(v).decode(errors="surrogateescape") for k, v in data.items()}


async def build_environment(pod: Pod, container: Obj, *, api: ObjectGetter | None,
                            where: PodPlacement, allocatable: Allocatable,
                            services: Mapping[str, str] | None = None) -> Environment:
    """The container's variables; `services` (the service links) come last, each unless
    the container defines the same name, and serve `$(VAR)` references too."""
    services = services or {}
    ns = pod["metadata"]["namespace"]
    objects = _Objects(api, ns)
    values: dict[str, str] = {}
    skipped: list[str] = []
    for source in container.get("envFrom") or []:
        kind, ref = (("configmaps", source["configMapRef"]) if "configMapRef" in source
                     else ("secrets", source.get("secretRef")))
        if ref is None:
            raise EnvError(f"envFrom source {sorted(source)} is not supported")
        data = await objects.data(kind, ref["name"], optional=bool(ref.get("optional")))
        prefix = source.get("prefix") or ""
        invalid = sorted(prefix + k for k in (data or {}) if not valid_name(prefix + k))
        values.update({prefix + k: v for k, v in (data or {}).items()
                       if valid_name(prefix + k)})
        if invalid:
            skipped.append(f"Keys [{', '.join(invalid)}] from the EnvFrom {_KINDS[kind]} "
                           f"{ns}/{ref['name']} were skipped since they are considered "
                           "invalid environment variable names.")
    order = list(values)
    for var in container.get("env") or []:
        name = var["name"]
        value = await _value(pod, container, var, defined=values, services=services,
                             objects=objects, where=where, allocatable=allocatable)
        if value is None:
            continue  # an optional source that is absent: the variable is not set
        if name not in values:
            order.append(name)
        values[name] = value
    env = [(k, values[k]) for k in order]
    env += [(k, v) for k, v in services.items() if k not in values]
    return Environment(env=tuple(env), skipped=tuple(skipped))


async def _value(pod: Pod, container: Obj, var: Obj, *, defined: dict[str, str],
                 services: Mapping[str, str], objects: _Objects, where: PodPlacement,
                 allocatable: Allocatable) -> str | None:
    if var.get("value") or "valueFrom" not in var:
        return expand(str(var.get("value") or ""), lookup_in(defined, services))
    source = var["valueFrom"]
    try:
        if "fieldRef" in source:
            return field_value(pod, source["fieldRef"]["fieldPath"], where)
        if "resourceFieldRef" in source:
            return resource_value(pod, container, source["resourceFieldRef"], allocatable)
    except DownwardError as exc:
        raise EnvError(f"env {var['name']}: {exc}") from exc
    for field, kind, label in (("configMapKeyRef", "configmaps", "ConfigMap"),
                               ("secretKeyRef", "secrets", "Secret")):
        if field in source:
            ref = source[field]
            optional = bool(ref.get("optional"))
            data = await objects.data(kind, ref["name"], optional=optional)
            if data is not None and ref["key"] in data:
                return data[ref["key"]]
            if optional:
                return None
            raise EnvError(f"couldn't find key {ref['key']} in {label} "
                           f"{pod['metadata']['namespace']}/{ref['name']}")
    raise EnvError(f"env {var['name']}: valueFrom {sorted(source)} is not supported "
                   "by this node")
