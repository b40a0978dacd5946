"""Service environment variables (`enableServiceLinks`), as the upstream kubelet sets them.

Each service with a cluster IP in the pod's namespace (when the pod enables service links,
the default), and always the `kubernetes` service of `default`, gives `<NAME>_SERVICE_HOST`,
`<NAME>_SERVICE_PORT[_<PORTNAME>]` and the Docker-link style `<NAME>_PORT...` variables.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from kubelet_py.errors import KubeletError

Obj = dict[str, Any]
MASTER_NAMESPACE = "default"
MASTER_SERVICES = ("kubernetes",)


class ServicesNotSynced(KubeletError):
    pass


def _var(name: str) -> str:
    return name.upper().replace("-", "_")


def _host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def service_variables(service: Obj) -> dict[str, str]:
    spec = service.get("spec") or {}
    ip = spec.get("clusterIP") or ""
    ports = spec.get("ports") or []
    prefix = _var(service["metadata"]["name"])
    out: dict[str, str] = {}
    if not ports:
        return out
    out[f"{prefix}_SERVICE_HOST"] = ip
    out[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
    for p in ports:
        if p.get("name"):
            out[f"{prefix}_SERVICE_PORT_{_var(p['name'])}"] = str(p["port"])
    for i, p in enumerate(ports):
        proto = (p.get("protocol") or "TCP").lower()
        url = f"{proto}://{_host_port(ip, p['port'])}"
        if i == 0:
            out[f"{prefix}_PORT"] = url
        base = f"{prefix}_PORT_{p['port']}_{proto.upper()}"
        out.update({base: url, f"{base}_PROTO": proto, f"{base}_PORT": str(p["port"]),
                    f"{base}_ADDR": ip})
    return out


def service_env(services: Iterable[Obj], *, namespace: str, links: bool) -> dict[str, str]:
    chosen: dict[str, Obj] = {}
    for svc in services:
        ip = (svc.get("spec") or {}).get("clusterIP") or ""
        if ip in ("", "None"):
            continue
        meta = svc["metadata"]
        name = meta["name"]
        if meta.get("namespace") == MASTER_NAMESPACE and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif meta.get("namespace") == namespace and links:
            chosen[name] = svc
    out: dict[str, str] = {}
    for name in sorted(chosen):
        out.update(service_variables(chosen[name]))
    return out


class ServiceLinks:
    """Service variables from a service informer's store (None: standalone, no services)."""

    def __init__(self, items: Callable[[], list[Obj]] | None,
                 synced: Callable[[], bool]) -> None:
        self._items = items
        self._synced = synced

    def env_for(self, namespace: str, *, links: bool) -> dict[str, str]:
        if self._items is None:
            return {}
        if not self._synced():
            raise ServicesNotSynced("services have not yet been read at least once, "
                                    "cannot construct envvars")
        return service_env(self._items(), namespace=namespace, links=links)
