"""kpy-loopback: bring ``lo`` up in the pod's netns."""
from __future__ import annotations

import os

from engine.networkdriver.plugins import netlink, setns, skel, spec

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a plugin exec ~10 ms of CPU (see plugins/value.py)
    from collections.abc import Mapping
    from typing import Any

    from engine.networkdriver.plugins.reaper import Reaper


def _set_lo(netns: str, state: str) -> bool:
    """False when the netns is gone."""
    try:
        fd = setns.open_netns(netns)
    except spec.CNIError as err:
        if err.code == spec.ERR_UNKNOWN_CONTAINER and state == "down":
            return False
        raise
    try:
        with netlink.session(fd) as ns:
            ns.set_link(netlink.lookup(ns, "lo") or 1, up=state == "up")
    except netlink.NetlinkError as exc:
        raise netlink.netlink_error(f"cannot set lo {state}", exc) from exc
    finally:
        os.close(fd)
    return True


class Loopback:
    def add(self, req: spec.Request) -> dict[str, Any]:
        _set_lo(req.netns, "up")
        prev = req.config.get("prevResult")
        if isinstance(prev, dict):
            return spec.normalize_result(prev)
        return {"cniVersion": spec.SPEC_VERSION,
                "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": req.netns}],
                "ips": [{"address": "127.0.0.1/8", "interface": 0},
                        {"address": "::1/128", "interface": 0}]}

    def delete(self, req: spec.Request) -> None:
        if req.netns:
            _set_lo(req.netns, "down")

    def check(self, req: spec.Request) -> None:
        fd = setns.open_netns(req.netns)
        try:
            with netlink.session(fd) as ns:
                flags = ns.link_by_index(netlink.lookup(ns, "lo") or 1)["flags"]
        finally:
            os.close(fd)
        if not flags & 1:
            raise spec.CNIError(spec.ERR_CHECK_FAILED, "lo is down in the container", req.netns)

    def gc(self, req: spec.Request) -> None:
        return None  # nothing outlives a netns

    def status(self, req: spec.Request) -> None:
        return None


PLUGIN = Loopback()


def run(env: Mapping[str, str], stdin: bytes, *,
        reaper: Reaper | None = None) -> tuple[int, bytes]:
    """In-process entry point (``reaper``: unused, this plugin deletes no device)."""
    return skel.dispatch(PLUGIN, env, stdin)


def main(stdin: bytes | None = None) -> None:
    skel.main(PLUGIN, stdin)
