"""VLANs on the bridge: ``vlan_filtering`` on the bridge, each pod's port an access port of
``vlan`` (PVID, untagged) and/or a trunk of ``vlanTrunk`` (tagged), and the gateway of a VLAN.

As the reference bridge plugin does it: without ``preserveDefaultVlan`` the bridge's default
PVID (VLAN 1) is removed from the port, so the pod hears nothing of the native VLAN; a trunk
without ``vlan`` gets VLAN 1 as its native (PVID, untagged) VLAN; with ``isGateway`` the
gateway address goes on ``<bridge>.<vlan>``, one end of a veth pair in the host netns whose
other end is a port of the bridge in that VLAN (created once, shared by the VLAN's pods).
"""
from __future__ import annotations

import errno
import struct

from engine.networkdriver.plugins import bridge_link, netlink, spec
from engine.networkdriver.plugins.bridge_config import BridgeConfig
from engine.networkdriver.plugins.netlink import Rtnl, attr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

AF_BRIDGE = 7
RTM_SETLINK = 19
IFLA_AF_SPEC = 26
IFLA_BRIDGE_FLAGS, IFLA_BRIDGE_VLAN_INFO = 0, 2
BRIDGE_FLAGS_MASTER = 1
BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED = 0x2, 0x4
IFLA_BR_VLAN_FILTERING = 7
_IFINFO_BRIDGE = struct.Struct("=BxHiII")
_VLAN_INFO = struct.Struct("=HH")


def _port_vlans(nl: Rtnl, command: int, port: int, vlans: list[tuple[int, int]]) -> None:
    """Add (RTM_SETLINK) or remove (RTM_DELLINK) ``(vid, flags)`` on a bridge port, at once."""
    spec_attrs = attr(IFLA_BRIDGE_FLAGS, struct.pack("=H", BRIDGE_FLAGS_MASTER))
    spec_attrs += b"".join(attr(IFLA_BRIDGE_VLAN_INFO, _VLAN_INFO.pack(flags, vid))
                           for vid, flags in vlans)
    body = (_IFINFO_BRIDGE.pack(AF_BRIDGE, 0, port, 0, 0)
            + attr(IFLA_AF_SPEC | netlink.NLA_F_NESTED, spec_attrs))
    verb = "add" if command == RTM_SETLINK else "remove"
    nl.request(command, netlink.NLM_F_ACK, body, f"{verb} VLANs of port {port}")


def port_plan(conf: BridgeConfig, default_pvid: int) -> tuple[list[int], list[tuple[int, int]]]:
    """(VLANs to remove, (vid, flags) to add) for a new port of the bridge."""
    if not conf.vlan_filtering:
        return [], []
    remove = [default_pvid] if default_pvid and not conf.preserve_default_vlan else []
    access = BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED
    add: list[tuple[int, int]] = []
    if conf.vlan:
        add.append((conf.vlan, access))
    elif conf.vlan_trunk:
        add.append((1, access))  # a trunk's native VLAN, as the reference plugin sets it
    add += [(vid, 0) for vid in conf.vlan_trunk if vid != conf.vlan]
    return remove, add


def _bridge_sysfs(bridge: str, name: str) -> int:
    try:
        with open(f"/sys/class/net/{bridge}/bridge/{name}") as f:
            return int(f.read().strip() or "0")
    except (OSError, ValueError):
        return 0


def setup_port(nl: Rtnl, port: int, conf: BridgeConfig) -> None:
    """The VLANs of a port just attached to the bridge (nothing without vlan/vlanTrunk)."""
    remove, add = port_plan(conf, _bridge_sysfs(conf.bridge, "default_pvid"))
    try:
        if remove:
            try:
                _port_vlans(nl, netlink.RTM_DELLINK, port, [(vid, 0) for vid in remove])
            except netlink.NetlinkError as exc:
                if not netlink.is_missing(exc):
                    raise
        if add:
            _port_vlans(nl, RTM_SETLINK, port, add)
    except netlink.NetlinkError as exc:
        raise netlink.netlink_error(f"cannot set the VLANs of port {port}", exc) from exc


def filtering_data() -> bytes:
    """IFLA_INFO_DATA of a bridge with VLAN filtering on."""
    return attr(IFLA_BR_VLAN_FILTERING, b"\x01")


def ensure_filtering(nl: Rtnl, index: int, conf: BridgeConfig) -> None:
    """Turn VLAN filtering on for an existing bridge (ports keep the default PVID, so
    untagged traffic of VLAN-unaware ports flows as before)."""
    if not conf.vlan_filtering or _bridge_sysfs(conf.bridge, "vlan_filtering"):
        return
    info = (netlink.attr_str(netlink.IFLA_INFO_KIND, "bridge")
            + attr(netlink.IFLA_INFO_DATA | netlink.NLA_F_NESTED, filtering_data()))
    body = netlink.ifinfo(index) + attr(netlink.IFLA_LINKINFO | netlink.NLA_F_NESTED, info)
    try:
        nl.request(netlink.RTM_NEWLINK, netlink.NLM_F_ACK, body, f"vlan_filtering on {index}")
    except netlink.NetlinkError as exc:
        if exc.code == errno.EOPNOTSUPP:
            raise bridge_link.no_vlan_filtering(conf.bridge) from exc
        raise netlink.netlink_error(f"cannot turn VLAN filtering on for {conf.bridge}",
                                    exc) from exc


def gateway_name(conf: BridgeConfig) -> str:
    name = f"{conf.bridge}.{conf.vlan}"
    if len(name) >= spec.IFNAMSIZ:
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, "VLAN gateway interface name is too long",
                            f"{name!r}: shorten the bridge name")
    return name


def ensure_gateway(nl: Rtnl, conf: BridgeConfig, bridge: Any) -> tuple[Any, str]:
    """The link message of ``<bridge>.<vlan>`` (created with the bridge's MTU, up, its peer a
    port of the bridge in the VLAN) and the name of the peer it was created with ("" when it
    existed). ``bridge``: the bridge's link message."""
    bridge_index, mtu = int(bridge["index"]), int(bridge.get("IFLA_MTU") or 0)
    name = gateway_name(conf)
    msg = nl.link(name)
    if msg is not None:
        return msg, ""
    peer = bridge_link.new_host_veth_name()
    try:
        nl.add_veth(name, peer=peer, peer_netns_fd=None, mtu=mtu)
    except netlink.NetlinkError as exc:
        msg = nl.link(name) if netlink.is_exists(exc) else None
        if msg is not None:
            return msg, ""  # another pod's ADD made it meanwhile
        raise netlink.netlink_error(f"cannot create the VLAN gateway {name}", exc) from exc
    try:
        peer_index = netlink.lookup(nl, peer)
        if peer_index is None:
            raise spec.CNIError(spec.ERR_NETLINK, f"veth {peer} vanished after creation")
        nl.set_link(peer_index, master=bridge_index, up=True)
        setup_port(nl, peer_index, conf)
        msg = nl.link(name)
        if msg is None:
            raise spec.CNIError(spec.ERR_NETLINK, f"{name} vanished after creation")
        nl.set_link(int(msg["index"]), up=True)
    except netlink.NetlinkError as exc:
        bridge_link.delete_link(nl, name)
        raise netlink.netlink_error(f"cannot set up the VLAN gateway {name}", exc) from exc
    except BaseException:
        bridge_link.delete_link(nl, name)
        raise
    return msg, peer
