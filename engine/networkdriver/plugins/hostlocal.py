"""kpy-host-local: an IPAM plugin compatible with the reference host-local (same disk layout)."""
from __future__ import annotations

import os

from engine.networkdriver.plugins import ipam_config, skel, spec
from engine.networkdriver.plugins.ipam_store import DiskStore

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a plugin exec ~10 ms of CPU (see plugins/value.py)
    from collections.abc import Mapping
    from typing import Any

    from engine.networkdriver.plugins.ipam_alloc import Allocation
    from engine.networkdriver.plugins.reaper import Reaper


def valid_attachments(conf: Mapping[str, Any]) -> list[tuple[str, str]]:
    raw = conf.get("cni.dev/valid-attachments")
    if raw is None:
        raw = conf.get("cni.dev/attachments", [])
    if not isinstance(raw, list):
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, "cni.dev/valid-attachments must be a list")
    out = []
    for a in raw:
        if not isinstance(a, dict) or not isinstance(a.get("containerID"), str):
            raise spec.CNIError(spec.ERR_INVALID_CONFIG, "malformed valid attachment", repr(a))
        out.append((a["containerID"], str(a.get("ifname", ""))))
    return out


def parse_resolv_conf(path: str) -> dict[str, Any]:
    dns: dict[str, Any] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, "cannot read resolvConf", str(exc)) from exc
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver":
            dns.setdefault("nameservers", []).extend(values)
        elif key == "domain":
            dns["domain"] = values[0]
        elif key == "search":
            dns["search"] = values
        elif key == "options":
            dns.setdefault("options", []).extend(values)
    return dns


# Seconds to wait for the data dir's lock before answering 11 (try again later). Unset: wait
# like host-local does. The engine sets it, so an in-process call never blocks a thread forever.
LOCK_TIMEOUT_ENV = "KPY_IPAM_LOCK_TIMEOUT"


class HostLocal:
    def __init__(self, *, lock_timeout: float | None = None) -> None:
        self.lock_timeout = lock_timeout

    def _load(self, req: spec.Request) -> tuple[ipam_config.IPAMConfig, DiskStore]:
        conf = ipam_config.load(req.config, req.args)
        timeout = self.lock_timeout
        raw = req.env.get(LOCK_TIMEOUT_ENV, "")
        if raw:
            try:
                timeout = float(raw)
            except ValueError as exc:
                raise spec.CNIError(spec.ERR_INVALID_ENV, f"{LOCK_TIMEOUT_ENV} is not a number",
                                    repr(raw)) from exc
        return conf, DiskStore(conf.data_dir, conf.name, lock_timeout=timeout)

    def add(self, req: spec.Request) -> dict[str, Any]:
        conf, store = self._load(req)
        dns = parse_resolv_conf(conf.resolv_conf) if conf.resolv_conf else {}
        requested = list(conf.requested)
        done: list[Allocation] = []
        from engine.networkdriver.plugins.ipam_alloc import Allocator  # ADD only: lazy for DEL
        with store.locked():
            try:
                for idx, range_set in enumerate(conf.range_sets):
                    want = next((ip for ip in requested if range_set.range_for(ip)), None)
                    if want is not None:
                        requested.remove(want)
                    done.append(Allocator(range_set, store, idx).get(
                        req.container_id, req.ifname, want))
                if requested:
                    raise spec.CNIError(spec.ERR_INVALID_CONFIG,
                                        "failed to allocate all requested IPs",
                                        " ".join(str(ip) for ip in requested))
            except BaseException:
                if done:
                    store.release(req.container_id, req.ifname)
                raise
        result: dict[str, Any] = {"cniVersion": spec.SPEC_VERSION,
                                  "ips": [a.to_json() for a in done]}
        if conf.routes:
            result["routes"] = [r.to_json() for r in conf.routes]
        if dns:
            result["dns"] = dns
        return result

    def delete(self, req: spec.Request) -> None:
        _, store = self._load(req)
        if not os.path.isdir(store.dir):
            return
        with store.locked():
            store.release(req.container_id, req.ifname)

    def check(self, req: spec.Request) -> None:
        _, store = self._load(req)
        with store.locked():
            if not store.ips_of(req.container_id, req.ifname):
                raise spec.CNIError(spec.ERR_UNKNOWN_CONTAINER,
                                    "no address allocated to the attachment",
                                    f"{req.container_id}/{req.ifname} in {store.dir}")

    def gc(self, req: spec.Request) -> None:
        valid = valid_attachments(req.config)
        _, store = self._load(req)
        if not os.path.isdir(store.dir):
            return
        with store.locked():
            store.gc(valid)

    def status(self, req: spec.Request) -> None:
        _, store = self._load(req)
        try:
            with store.locked():
                if not os.access(store.dir, os.W_OK):
                    raise OSError(f"{store.dir} is not writable")
        except OSError as exc:
            raise spec.CNIError(spec.ERR_PLUGIN_NOT_AVAILABLE, "IPAM data dir unusable",
                                str(exc)) from exc


PLUGIN = HostLocal()


def run(env: Mapping[str, str], stdin: bytes, *,
        reaper: Reaper | None = None) -> tuple[int, bytes]:
    """In-process entry point: the same code path as the executable. ``reaper`` (see
    plugins/reaper.py) is for plugins that delete devices; this one has none to delete."""
    return skel.dispatch(PLUGIN, env, stdin)


def main(stdin: bytes | None = None) -> None:
    skel.main(PLUGIN, stdin)
