"""kpy-bridge: pods on a Linux bridge through veth pairs; addresses from a delegated IPAM."""
from __future__ import annotations

import errno
import os

from engine.networkdriver.plugins import (
    bridge_config,
    bridge_link,
    invoke,
    ipnet,
    netlink,
    setns,
    skel,
    spec,
)
from engine.networkdriver.plugins.background import Background
from engine.networkdriver.plugins.bridge_config import BridgeConfig
from engine.networkdriver.plugins.bridge_link import Iface
from engine.networkdriver.plugins.ipam_config import IPAddress
from engine.networkdriver.plugins.netlink import Rtnl

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a plugin exec ~10 ms of CPU (see plugins/value.py)
    from collections.abc import Callable, Mapping
    from types import ModuleType
    from typing import Any

    from engine.networkdriver.plugins.reaper import Reaper


def _warn(msg: str) -> None:
    """Log with the traceback; ``logging`` is imported only on this (failure) path."""
    import logging

    logging.getLogger(__name__).warning(msg, exc_info=True)


def _ipam(req: spec.Request, conf: BridgeConfig, command: str) -> dict[str, Any] | None:
    return invoke.delegate(conf.ipam_type, command=command, env=req.env, stdin=req.stdin,
                           path=req.path, request=req)


def _vlan() -> ModuleType:
    from engine.networkdriver.plugins import bridge_vlan  # lazy: only VLAN configs need it

    return bridge_vlan


def masq_backend(conf: BridgeConfig) -> ModuleType:
    """The masquerade backend of ``conf`` (lazy imports: only ipMasq needs one); not set:
    nftables when the kernel has it, else iptables."""
    if conf.ip_masq_backend != "iptables":
        from engine.networkdriver.plugins import masq_nft

        if conf.ip_masq_backend == "nftables" or masq_nft.available():
            return masq_nft
    from engine.networkdriver.plugins import masq

    return masq


def _reap_key(req: spec.Request) -> str:
    return f"{req.netns}\0{req.ifname}"


class Bridge:
    """``reaper``: given by in-process callers, DEL hands the veth deletion to it (see
    plugins/reaper.py); an exec deletes before it exits."""

    def __init__(self, *, reaper: Reaper | None = None) -> None:
        self.reaper = reaper

    def add(self, req: spec.Request) -> dict[str, Any]:
        conf = bridge_config.load(req.config)
        if self.reaper is not None:  # our own DEL of this attachment may still be deleting
            self.reaper.wait(_reap_key(req))
        nsfd = setns.open_netns(req.netns)
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
        addrs: list[Iface] = [ipnet.ip_interface(ip["address"]) for ip in ipam["ips"]]
        gateways: dict[int, IPAddress] = {
            a.version: ipnet.ip_address(ip["gateway"])
            for a, ip in zip(addrs, ipam["ips"], strict=True) if ip.get("gateway")}
        undo: list[Callable[[], object]] = []
        with netlink.session() as host:
            try:
                vlan = _vlan() if conf.vlan_filtering else None
                br_msg, created = bridge_link.ensure_bridge(
                    host, conf, data=vlan.filtering_data() if vlan else b"")
                br_index = int(br_msg["index"])
                if created:
                    undo.append(lambda: bridge_link.delete_bridge_if_unused(host, conf.bridge))
                elif vlan:
                    vlan.ensure_filtering(host, br_index, conf)
                bridge_link.bridge_up(host, br_msg, conf)
                gw_msg, gw_index = br_msg, br_index  # where the gateway addresses go
                to_add: list[Iface] = []
                to_remove: list[Iface] = []
                if conf.is_gateway:
                    if vlan and conf.vlan:
                        gw_msg, gw_peer = vlan.ensure_gateway(host, conf, br_msg)
                        gw_index = int(gw_msg["index"])
                        if gw_peer:
                            undo.append(lambda: bridge_link.delete_link(host, gw_peer))
                    wanted = [ipnet.ip_interface(f"{gateways[a.version]}/{a.network.prefixlen}")
                              for a in addrs if a.version in gateways]
                    to_add, to_remove = bridge_link.plan_gateway_addresses(
                        host, gw_index, conf, list(dict.fromkeys(wanted)),
                        device=str(gw_msg.get("IFLA_IFNAME") or conf.bridge))
                host_name, host_msg, mac = bridge_link.create_veth(
                    host, ifname=req.ifname, netns_fd=nsfd, mtu=conf.mtu, bridge_index=br_index)
                host_index = int(host_msg["index"])
                undo.append(lambda: bridge_link.delete_link(host, host_name))
                bridge_link.set_hairpin(host, host_index, host_name, conf)
                if vlan:
                    vlan.setup_port(host, host_index, conf)
                if conf.is_gateway:
                    bridge_link.apply_addresses(host, gw_index, to_add, to_remove)
                    bridge_link.enable_forwarding({a.version for a in addrs})
                routes = list(ipam.get("routes", []))
                if conf.is_default_gateway:
                    have = {r["dst"] for r in routes}
                    for v, gw in sorted(gateways.items()):
                        dst = "0.0.0.0/0" if v == 4 else "::/0"
                        if dst not in have:
                            routes.append({"dst": dst, "gw": str(gw)})
                peer_index = host_msg.get("IFLA_LINK") or None
                with netlink.session(nsfd) as ns:
                    self._configure_container(ns, req.ifname, index=peer_index, addrs=addrs,
                                              routes=routes, gateways=gateways)
                if conf.ip_masq:
                    masq = masq_backend(conf)
                    undo.append(lambda: masq.teardown(conf.name, req.container_id, addrs))
                    masq.setup(conf.name, req.container_id, addrs)
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
                if gw_index != br_index:  # the VLAN's gateway, as the reference lists it
                    result["interfaces"].append({"name": gw_msg.get("IFLA_IFNAME"),
                                                 "mac": gw_msg.get("IFLA_ADDRESS")})
                return result
            except BaseException:
                for step in reversed(undo):
                    try:
                        step()
                    except Exception:
                        _warn("rollback step failed")
                raise

    @staticmethod
    def _configure_container(ns: Rtnl, ifname: str, *, index: int | None, addrs: list[Iface],
                             routes: list[Mapping[str, Any]],
                             gateways: Mapping[int, IPAddress]) -> None:
        """Up, addresses and routes on ``ifname``, found by ``index`` (the host end's
        IFLA_LINK) or else by name."""
        if index is None:
            index = netlink.lookup(ns, ifname)
            if index is None:
                raise spec.CNIError(spec.ERR_NETLINK, f"{ifname} missing in the container")
        try:
            for a in addrs:
                bridge_link.add_address(ns, index, a)
            ns.set_link(index, up=True)
            for r in routes:
                dst = ipnet.ip_network(r["dst"], strict=False)
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

    def delete(self, req: spec.Request) -> None:
        conf = bridge_config.load(req.config)
        prev = spec.normalize_result(conf.prev_result) if conf.prev_result else None
        addrs: list[Iface] = []
        if prev is not None:
            addrs = [ipnet.ip_interface(ip["address"]) for ip in prev["ips"]]
        host_veth = _host_veth(prev, conf) if prev is not None else None
        # the pair goes with its host end: no entering the pod's netns at all. An exec deletes
        # it on a thread: the kernel's wait (an RCU barrier, 15-25 ms of sleep) overlaps the
        # address release and the masquerade teardown
        unlink = None if host_veth is None else Background(
            lambda: self._unlink_host_end(req, conf, host_veth), inline=self.reaper is not None)
        try:
            _ipam(req, conf, "DEL")
            if conf.ip_masq and addrs:
                self._unmasquerade(req, conf, addrs)
        finally:
            rest = unlink.join() if unlink is not None else None
            deleted = rest is not None
            if self.reaper is not None and rest is not None and rest is not _nothing:
                # handed over last: the reaper's thread would otherwise compete for the GIL
                # with the release above, on the caller's time
                self.reaper.submit(_reap_key(req), rest)
        if not deleted and req.netns:
            found = self._delete_in_container(req)
            if conf.ip_masq and not addrs:
                self._unmasquerade(req, conf, found)

    def _unlink_host_end(self, req: spec.Request, conf: BridgeConfig,
                         name: str) -> Callable[[], None] | None:
        """None when ``name`` is not (any more) a veth port of our bridge; else what deletes
        the pair (for the reaper: see _unlink), or a no-op once it is deleted."""
        with netlink.session() as host:
            index = _our_port(host, name, conf.bridge)
            if index is None:
                return None
            return self._unlink(host, index, name)

    @staticmethod
    def _unmasquerade(req: spec.Request, conf: BridgeConfig, addrs: list[Iface]) -> None:
        """Remove the attachment's masquerade chain (also in-process: firewall state is what
        callers look at after DEL, unlike a detached veth waiting for the kernel)."""
        masq_backend(conf).teardown(conf.name, req.container_id, addrs)

    def _unlink(self, nl: Rtnl, index: int, name: str) -> Callable[[], None]:
        """Delete the pair by its host end (a no-op is returned), or with a reaper: cut the
        host end off the bridge (the pod leaves the network's L2 segment at once: no ARP
        answers or frames for its released address) and return the deletion, for the
        reaper. Cut off by disabling the bridge port (see bridge_link.disable_port), or, on
        a bridge whose kernel STP refuses that, by taking it off the bridge; not by setting
        it down: ~1 ms (a carrier change runs the pod netns' notifiers)."""
        if self.reaper is None:
            _delete_index(nl, index, name)
            return _nothing
        try:
            try:
                bridge_link.disable_port(nl, index, name)
            except netlink.NetlinkError as exc:
                if exc.code != errno.EBUSY:
                    raise
                nl.set_link(index, master=0)
        except netlink.NetlinkError as exc:
            if netlink.is_missing(exc):
                return _nothing
            raise netlink.netlink_error(f"cannot detach {name}", exc) from exc
        return lambda: _delete_detached(name, index)

    @staticmethod
    def _delete_in_container(req: spec.Request) -> list[Iface]:
        """Delete ``ifname`` in the pod's netns; its addresses (for the masquerade rules)."""
        try:
            nsfd = setns.open_netns(req.netns)
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

        nsfd = setns.open_netns(req.netns)
        try:
            bridge_check.check(conf, req, prev, nsfd)
        finally:
            os.close(nsfd)

    def gc(self, req: spec.Request) -> None:
        conf = bridge_config.load(req.config)
        _ipam(req, conf, "GC")
        if conf.ip_masq:
            from engine.networkdriver.plugins.hostlocal import valid_attachments

            masq_backend(conf).gc(conf.name, {cid for cid, _ in valid_attachments(req.config)})

    def status(self, req: spec.Request) -> None:
        conf = bridge_config.load(req.config)
        _ipam(req, conf, "STATUS")


def _host_veth(prev: Mapping[str, Any], conf: BridgeConfig) -> str | None:
    """The host end of the pair in an ADD result of ours: the one interface that is neither
    the bridge nor in a sandbox, named like ours."""
    names = [str(i.get("name", "")) for i in prev.get("interfaces") or []
             if not i.get("sandbox") and i.get("name") != conf.bridge]
    names = [n for n in names if bridge_link.is_host_veth_name(n)]  # not a VLAN's gateway
    return names[0] if len(names) == 1 else None


def _our_port(nl: Rtnl, name: str, bridge: str) -> int | None:
    """The index of ``name`` if it is a veth enslaved to ``bridge`` (else None: gone already,
    or the name is someone else's now)."""
    msg = nl.link(name)
    if msg is None or not _is_veth(msg):
        return None
    master = msg.get("IFLA_MASTER")
    if not master:
        return None
    try:  # sysfs names the master: a syscall instead of a netlink request
        ours = os.path.basename(os.readlink(f"/sys/class/net/{name}/master")) == bridge
    except OSError:
        ours = master == netlink.lookup(nl, bridge)
    return int(msg["index"]) if ours else None


def _is_veth(msg: Mapping[str, Any]) -> bool:
    return bool((msg.get("IFLA_LINKINFO") or {}).get("IFLA_INFO_KIND") == "veth")


def _nothing() -> None:
    """What is left to delete of a pair already gone."""


def _delete_detached(name: str, index: int) -> None:
    """The reaper's job: delete ``name`` if it is still the veth we cut off, by name and
    index (a netns deleted meanwhile takes the pair with it, and its index may be reused;
    our host ends' random names are not)."""
    with netlink.session() as nl:
        msg = nl.link(name)
        if msg is None or int(msg["index"]) != index or not _is_veth(msg):
            return
        _delete_index(nl, index, name)


def _delete_index(nl: Rtnl, index: int, name: str) -> None:
    try:
        nl.del_link(index)
    except netlink.NetlinkError as exc:
        if not netlink.is_missing(exc):
            raise netlink.netlink_error(f"cannot delete {name}", exc) from exc


PLUGIN = Bridge()


def run(env: Mapping[str, str], stdin: bytes, *,
        reaper: Reaper | None = None) -> tuple[int, bytes]:
    """In-process entry point: the same code path as the executable (``reaper``: see Bridge)."""
    return skel.dispatch(PLUGIN if reaper is None else Bridge(reaper=reaper), env, stdin)


def main(stdin: bytes | None = None) -> None:
    skel.main(PLUGIN, stdin)
