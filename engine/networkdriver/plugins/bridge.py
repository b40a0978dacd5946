"""kpy-bridge: pods on a Linux bridge through veth pairs; addresses from a delegated IPAM."""
from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from types import ModuleType

from engine.networkdriver.plugins import bridge_config, bridge_link, invoke, netlink, skel, spec
from engine.networkdriver.plugins.bridge_config import BridgeConfig
from engine.networkdriver.plugins.bridge_link import Iface
from engine.networkdriver.plugins.ipam_config import IPAddress
from engine.networkdriver.plugins.netlink import Rtnl

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a plugin exec ~10 ms of CPU (see plugins/value.py)
    from typing import Any



def _warn(msg: str) -> None:
    """Log with the traceback; ``logging`` is imported only on this (failure) path."""
    import logging

    logging.getLogger(__name__).warning(msg, exc_info=True)


def _ipam(req: spec.Request, conf: BridgeConfig, command: str) -> dict[str, Any] | None:
    return invoke.delegate(conf.ipam_type, command=command, env=req.env, stdin=req.stdin,
                           path=req.path)


def _masq() -> ModuleType:
    from engine.networkdriver.plugins import masq  # lazy: subprocess is only needed with ipMasq

    return masq


class Bridge:
    def add(self, req: spec.Request) -> dict[str, Any]:
        conf = bridge_config.load(req.config)
        nsfd = netlink.open_netns(req.netns)
        try:
            raw = _ipam(req, conf, "ADD")
            if raw is None:
                raise spec.CNIError(spec.ERR_DECODE, f"IPAM plugin {conf.ipam_type} gave no result")
            ipam = spec.normalize_result(raw)
            if not ipam["ips"]:
                _ipam(req, conf, "DEL")
                raise spec.CNIError(spec.ERR_INVALID_CONFIG, "IPAM returned no addresses")
            try:
                return self._setup(req, conf, nsfd, ipam)
            except BaseException:
                try:
                    _ipam(req, conf, "DEL")
                except spec.CNIError:
                    _warn("IPAM DEL after a failed ADD failed")
                raise
        finally:
            os.close(nsfd)

    def _setup(self, req: spec.Request, conf: BridgeConfig, nsfd: int,
               ipam: dict[str, Any]) -> dict[str, Any]:
        addrs: list[Iface] = [ipaddress.ip_interface(ip["address"]) for ip in ipam["ips"]]
        gateways: dict[int, IPAddress] = {
            a.version: ipaddress.ip_address(ip["gateway"])
            for a, ip in zip(addrs, ipam["ips"], strict=True) if ip.get("gateway")}
        undo: list[Callable[[], object]] = []
        with netlink.session() as host:
            try:
                br_msg, created = bridge_link.ensure_bridge(host, conf)
                br_index = int(br_msg["index"])
                if created:
                    undo.append(lambda: bridge_link.delete_bridge_if_unused(host, conf.bridge))
                to_add: list[Iface] = []
                to_remove: list[Iface] = []
                if conf.is_gateway:
                    wanted = [ipaddress.ip_interface(f"{gateways[a.version]}/{a.network.prefixlen}")
                              for a in addrs if a.version in gateways]
                    to_add, to_remove = bridge_link.plan_gateway_addresses(
                        host, br_index, conf, list(dict.fromkeys(wanted)))
                bridge_link.bridge_up(host, br_index, conf)
                host_name, host_msg = bridge_link.create_veth(
                    host, ifname=req.ifname, netns_fd=nsfd, mtu=conf.mtu)
                host_index = int(host_msg["index"])
                undo.append(lambda: bridge_link.delete_link(host, host_name))
                bridge_link.attach_port(host, index=host_index, name=host_name,
                                        bridge_index=br_index, conf=conf)
                if conf.is_gateway:
                    bridge_link.apply_addresses(host, br_index, to_add, to_remove)
                    bridge_link.enable_forwarding({a.version for a in addrs})
                routes = list(ipam.get("routes", []))
                if conf.is_default_gateway:
                    have = {r["dst"] for r in routes}
                    for v, gw in sorted(gateways.items()):
                        dst = "0.0.0.0/0" if v == 4 else "::/0"
                        if dst not in have:
                            routes.append({"dst": dst, "gw": str(gw)})
                with netlink.session(nsfd) as ns:
                    mac = self._configure_container(ns, req.ifname, addrs, routes, gateways)
                if conf.ip_masq:
                    undo.append(lambda: _masq().teardown(conf.name, req.container_id))
                    _masq().setup(conf.name, req.container_id, addrs)
                result: dict[str, Any] = {
                    "cniVersion": spec.SPEC_VERSION,
                    "interfaces": [
                        {"name": conf.bridge, "mac": br_msg.get("IFLA_ADDRESS")},
                        {"name": host_name, "mac": host_msg.get("IFLA_ADDRESS")},
                        {"name": req.ifname, "mac": mac, "sandbox": req.netns},
                    ],
                    "ips": [{**ip, "interface": 2} for ip in ipam["ips"]],
                    "routes": routes,
                    "dns": dict(conf.dns) or ipam.get("dns", {}),
                }
                return result
            except BaseException:
                for step in reversed(undo):
                    try:
                        step()
                    except Exception:
                        _warn("rollback step failed")
                raise

    @staticmethod
    def _configure_container(ns: Rtnl, ifname: str, addrs: list[Iface],
                             routes: list[Mapping[str, Any]],
                             gateways: Mapping[int, IPAddress]) -> str:
        msg = ns.link(ifname)
        if msg is None:
            raise spec.CNIError(spec.ERR_NETLINK, f"{ifname} missing in the container")
        index = int(msg["index"])
        try:
            for a in addrs:
                bridge_link.add_address(ns, index, a)
            ns.set_link(index, up=True)
            for r in routes:
                dst = ipaddress.ip_network(r["dst"], strict=False)
                gw = r.get("gw")
                if not gw and dst.version in gateways:
                    gw = str(gateways[dst.version])
                try:
                    ns.add_route(dst, oif=index, gateway=gw or "")
                except netlink.NetlinkError as exc:
                    if not netlink.is_exists(exc):
                        raise
        except (netlink.NetlinkError, OSError) as exc:
            raise netlink.netlink_error(f"cannot configure {ifname} in the container", exc) from exc
        return str(msg.get("IFLA_ADDRESS"))

    def delete(self, req: spec.Request) -> None:
        conf = bridge_config.load(req.config)
        _ipam(req, conf, "DEL")
        prev = spec.normalize_result(conf.prev_result) if conf.prev_result else None
        addrs: list[Iface] = []
        if prev is not None:
            addrs = [ipaddress.ip_interface(ip["address"]) for ip in prev["ips"]]
        host_veth = _host_veth(prev, conf) if prev is not None else None
        deleted = False
        if host_veth is not None:
            # the pair goes with its host end: no entering the pod's netns at all
            with netlink.session() as host:
                index = _our_port(host, host_veth, conf.bridge)
                if index is not None:
                    _delete_index(host, index, host_veth)
                    deleted = True
        if not deleted and req.netns:
            found = self._delete_in_container(req)
            addrs = addrs or found
        if conf.ip_masq:
            _masq().teardown(conf.name, req.container_id, addrs)

    @staticmethod
    def _delete_in_container(req: spec.Request) -> list[Iface]:
        """Delete ``ifname`` in the pod's netns; its addresses (for the masquerade rules)."""
        try:
            nsfd = netlink.open_netns(req.netns)
        except spec.CNIError as err:
            if err.code != spec.ERR_UNKNOWN_CONTAINER:
                raise
            return []
        try:
            with netlink.session(nsfd) as ns:
                index = netlink.lookup(ns, req.ifname)
                if index is None:
                    return []
                found = [a for a in bridge_link.addresses(ns, index)
                         if not (a.version == 6 and a.ip.is_link_local)]
                _delete_index(ns, index, req.ifname)
                return found
        except spec.CNIError as err:
            if err.code != spec.ERR_UNKNOWN_CONTAINER:
                raise
            return []
        except netlink.NetlinkError as exc:
            raise netlink.netlink_error(f"cannot delete {req.ifname}", exc) from exc
        finally:
            os.close(nsfd)

    def check(self, req: spec.Request) -> None:
        conf = bridge_config.load(req.config)
        if conf.prev_result is None:
            raise spec.CNIError(spec.ERR_INVALID_CONFIG, "CHECK needs prevResult")
        prev = spec.normalize_result(conf.prev_result)
        _ipam(req, conf, "CHECK")
        from engine.networkdriver.plugins import bridge_check

        nsfd = netlink.open_netns(req.netns)
        try:
            bridge_check.check(conf, req, prev, nsfd)
        finally:
            os.close(nsfd)

    def gc(self, req: spec.Request) -> None:
        conf = bridge_config.load(req.config)
        _ipam(req, conf, "GC")
        if conf.ip_masq:
            from engine.networkdriver.plugins.hostlocal import valid_attachments

            _masq().gc(conf.name, {cid for cid, _ in valid_attachments(req.config)})

    def status(self, req: spec.Request) -> None:
        conf = bridge_config.load(req.config)
        _ipam(req, conf, "STATUS")


def _host_veth(prev: Mapping[str, Any], conf: BridgeConfig) -> str | None:
    """The host end of the pair in an ADD result of ours: the one interface that is neither
    the bridge nor in a sandbox, named like ours."""
    names = [str(i.get("name", "")) for i in prev.get("interfaces") or []
             if not i.get("sandbox") and i.get("name") != conf.bridge]
    return names[0] if len(names) == 1 and bridge_link.is_host_veth_name(names[0]) else None


def _our_port(nl: Rtnl, name: str, bridge: str) -> int | None:
    """The index of ``name`` if it is a veth enslaved to ``bridge`` (else None: gone already,
    or the name is someone else's now)."""
    msg = nl.link(name)
    if msg is None or (msg.get("IFLA_LINKINFO") or {}).get("IFLA_INFO_KIND") != "veth":
        return None
    master = msg.get("IFLA_MASTER")
    bridge_index = netlink.lookup(nl, bridge) if master else None
    return int(msg["index"]) if master is not None and master == bridge_index else None


def _delete_index(nl: Rtnl, index: int, name: str) -> None:
    try:
        nl.del_link(index)
    except netlink.NetlinkError as exc:
        if not netlink.is_missing(exc):
            raise netlink.netlink_error(f"cannot delete {name}", exc) from exc


PLUGIN = Bridge()


def run(env: Mapping[str, str], stdin: bytes) -> tuple[int, bytes]:
    """In-process entry point: the same code path as the executable."""
    return skel.dispatch(PLUGIN, env, stdin)


def main() -> None:
    skel.main(PLUGIN)
