"""Kernel objects of the bridge plugin: the bridge, its gateway addresses, the veth pair."""
from __future__ import annotations

import ipaddress
import os
from typing import Any

from engine.networkdriver.plugins import netlink, spec
from engine.networkdriver.plugins.bridge_config import BridgeConfig

Iface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def ensure_bridge(ipr: Any, conf: BridgeConfig) -> tuple[int, bool]:
    """(index, created): create the bridge or reuse the existing one (not yet up)."""
    created = False
    index = netlink.lookup(ipr, conf.bridge)
    if index is None:
        extra: dict[str, Any] = {"mtu": conf.mtu} if conf.mtu else {}
        if conf.vlan:
            extra["br_vlan_filtering"] = 1
        try:
            ipr.link("add", ifname=conf.bridge, kind="bridge", **extra)
            created = True
        except Exception as exc:
            if not netlink.is_exists(exc):
                raise netlink.netlink_error(f"cannot create bridge {conf.bridge}", exc) from exc
        index = netlink.lookup(ipr, conf.bridge)
        if index is None:
            raise spec.CNIError(spec.ERR_NETLINK, f"bridge {conf.bridge} vanished after creation")
    kind = netlink.link_kind(ipr, index)
    if kind != "bridge":
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, f"{conf.bridge} exists and is not a bridge",
                            f"its kind is {kind or 'unknown'!r}")
    return index, created


def bridge_up(ipr: Any, index: int, conf: BridgeConfig) -> None:
    try:
        if conf.promisc:
            ipr.link("set", index=index, flags=netlink.IFF_PROMISC, change=netlink.IFF_PROMISC)
        ipr.link("set", index=index, state="up")
    except Exception as exc:
        raise netlink.netlink_error(f"cannot bring bridge {conf.bridge} up", exc) from exc


def bridge_ports(bridge: str) -> list[str]:
    try:
        return os.listdir(f"/sys/class/net/{bridge}/brif")
    except FileNotFoundError:
        return []


def delete_bridge_if_unused(ipr: Any, bridge: str) -> None:
    index = netlink.lookup(ipr, bridge)
    if index is not None and not bridge_ports(bridge):
        try:
            ipr.link("del", index=index)
        except Exception as exc:
            if not netlink.is_missing(exc):
                raise


def _addrs(ipr: Any, index: int) -> list[tuple[Iface, int]]:
    out = []
    for msg in ipr.get_addr(index=index):
        addr = msg.get("IFA_ADDRESS")
        if addr:
            out.append((ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}"), msg["flags"]))
    return out


def plan_gateway_addresses(ipr: Any, index: int, conf: BridgeConfig,
                           wanted: list[Iface]) -> tuple[list[Iface], list[Iface]]:
    """(to_add, to_remove) on the bridge; CNIError 102 on a conflicting address."""
    have = [a for a, _ in _addrs(ipr, index) if not (a.version == 6 and a.ip.is_link_local)]
    to_add, to_remove = [], []
    for want in wanted:
        if want in have:
            continue
        clash = [h for h in have if h.version == want.version and h.network.overlaps(want.network)]
        if clash and not conf.force_address:
            raise spec.CNIError(spec.ERR_ADDRESS_CONFLICT,
                                f"bridge {conf.bridge} already has a conflicting address",
                                f"has {', '.join(map(str, clash))}, wants {want} "
                                "(set forceAddress to replace it)")
        to_remove += clash
        to_add.append(want)
    return to_add, to_remove


def apply_addresses(ipr: Any, index: int, add: list[Iface], remove: list[Iface]) -> None:
    for a in remove:
        ipr.addr("del", index=index, address=str(a.ip), prefixlen=a.network.prefixlen)
    for a in add:
        add_address(ipr, index, a)


def add_address(ipr: Any, index: int, a: Iface) -> None:
    kwargs: dict[str, Any] = {}
    if a.version == 6:
        kwargs["flags"] = netlink.IFA_F_NODAD
    try:
        ipr.addr("add", index=index, address=str(a.ip), prefixlen=a.network.prefixlen, **kwargs)
    except Exception as exc:
        if not netlink.is_exists(exc):
            raise


def create_veth(ipr: Any, *, ifname: str, netns_fd: int, mtu: int) -> tuple[str, int]:
    """A veth pair: the host end (random name) here, ``ifname`` inside the pod's netns."""
    peer: dict[str, Any] = {"ifname": ifname, "net_ns_fd": netns_fd}
    extra: dict[str, Any] = {}
    if mtu:
        peer["mtu"] = mtu
        extra["mtu"] = mtu
    for _ in range(5):
        host = "veth" + os.urandom(4).hex()
        try:
            ipr.link("add", ifname=host, kind="veth", peer=peer, **extra)
        except Exception as exc:
            if netlink.is_exists(exc) and netlink.lookup(ipr, host) is not None:
                continue  # our random name was taken: try another
            if netlink.is_exists(exc):
                raise spec.CNIError(spec.ERR_INVALID_ENV,
                                    f"interface {ifname} already exists in the container",
                                    "the attachment exists already (container ID reused?)"
                                    ) from exc
            raise netlink.netlink_error("cannot create the veth pair", exc) from exc
        index = netlink.lookup(ipr, host)
        if index is None:
            raise spec.CNIError(spec.ERR_NETLINK, f"veth {host} vanished after creation")
        return host, index
    raise spec.CNIError(spec.ERR_NETLINK, "cannot find a free host veth name")


def attach_port(ipr: Any, *, index: int, name: str, bridge_index: int, conf: BridgeConfig) -> None:
    ipr.link("set", index=index, master=bridge_index)
    if conf.hairpin:
        with open(f"/sys/class/net/{name}/brport/hairpin_mode", "w") as f:
            f.write("1")
    if conf.vlan:
        ipr.vlan_filter("del", index=index, vlan_info={"vid": 1})
        ipr.vlan_filter("add", index=index, vlan_info={"vid": conf.vlan, "flags": 6})
    ipr.link("set", index=index, state="up")


def delete_link(ipr: Any, name: str) -> bool:
    index = netlink.lookup(ipr, name)
    if index is None:
        return False
    try:
        ipr.link("del", index=index)
    except Exception as exc:
        if not netlink.is_missing(exc):
            raise
    return True


def enable_forwarding(versions: set[int]) -> None:
    paths = {4: "/proc/sys/net/ipv4/ip_forward", 6: "/proc/sys/net/ipv6/conf/all/forwarding"}
    for v in sorted(versions):
        with open(paths[v], "r+") as f:
            if f.read().strip() != "1":
                f.seek(0)
                f.write("1")
