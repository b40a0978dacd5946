"""Kernel objects of the bridge plugin: the bridge, its gateway addresses, the veth pair."""
from __future__ import annotations

import errno
import os
import struct

from engine.networkdriver.plugins import ipnet, netlink, spec
from engine.networkdriver.plugins.bridge_config import BridgeConfig
from engine.networkdriver.plugins.netlink import Rtnl

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a plugin exec ~10 ms of CPU (see plugins/value.py)
    from typing import Any

Iface = ipnet.Interface


def random_mac() -> str:
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in raw)


def ensure_bridge(nl: Rtnl, conf: BridgeConfig, *, data: bytes = b"") -> tuple[Any, bool]:
    """(link message, created): create the bridge (``data``: its IFLA_INFO_DATA attributes)
    or reuse the existing one (not yet up)."""
    created = False
    msg = nl.link(conf.bridge)
    if msg is None:
        try:
            # a fixed MAC: a bridge without one takes its lowest port's, which changes as pods
            # come and go and leaves stale gateway entries in the pods' neighbour caches
            nl.add_link(conf.bridge, "bridge", mtu=conf.mtu, address=random_mac(), data=data)
            created = True
        except netlink.NetlinkError as exc:
            if data and exc.code == errno.EOPNOTSUPP:
                raise no_vlan_filtering(conf.bridge) from exc
            if not netlink.is_exists(exc):
                raise netlink.netlink_error(f"cannot create bridge {conf.bridge}", exc) from exc
        msg = nl.link(conf.bridge)
        if msg is None:
            raise spec.CNIError(spec.ERR_NETLINK, f"bridge {conf.bridge} vanished after creation")
    info = msg.get("IFLA_LINKINFO")
    kind = str(info.get("IFLA_INFO_KIND")) if info is not None else ""
    if kind != "bridge":
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, f"{conf.bridge} exists and is not a bridge",
                            f"its kind is {kind or 'unknown'!r}")
    return msg, created


def no_vlan_filtering(bridge: str) -> spec.CNIError:
    return spec.CNIError(spec.ERR_UNSUPPORTED_FIELD,
                         "vlan and vlanTrunk need bridge VLAN filtering, which this kernel lacks",
                         f"bridge {bridge}: the kernel refuses vlan_filtering "
                         "(built without CONFIG_BRIDGE_VLAN_FILTERING)")


def bridge_up(nl: Rtnl, msg: Any, conf: BridgeConfig) -> None:
    """Up (and promiscuous if asked), with one request and only when it is not already."""
    index, flags = int(msg["index"]), int(msg["flags"])
    want = netlink.IFF_UP | (netlink.IFF_PROMISC if conf.promisc else 0)
    if flags & want == want:
        return
    try:
        nl.set_link(index, flags=want, change=want)
    except netlink.NetlinkError as exc:
        raise netlink.netlink_error(f"cannot bring bridge {conf.bridge} up", exc) from exc


def bridge_ports(bridge: str) -> list[str]:
    try:
        return os.listdir(f"/sys/class/net/{bridge}/brif")
    except FileNotFoundError:
        return []


def delete_bridge_if_unused(nl: Rtnl, bridge: str) -> None:
    index = netlink.lookup(nl, bridge)
    if index is not None and not bridge_ports(bridge):
        try:
            nl.del_link(index)
        except netlink.NetlinkError as exc:
            if not netlink.is_missing(exc):
                raise


def addresses(nl: Rtnl, index: int) -> list[Iface]:
    return [ipnet.ip_interface(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}")
            for m in nl.addresses(index) if m.get("IFA_ADDRESS")]


def plan_gateway_addresses(nl: Rtnl, index: int, conf: BridgeConfig, wanted: list[Iface], *,
                           device: str = "") -> tuple[list[Iface], list[Iface]]:
    """(to_add, to_remove) on the gateway ``device`` (the bridge, or its VLAN's gateway);
    CNIError 102 on a conflicting address."""
    have = [a for a in addresses(nl, index) if not (a.version == 6 and a.ip.is_link_local)]
    to_add, to_remove = [], []
    for want in wanted:
        if want in have:
            continue
        clash = [h for h in have if h.version == want.version and h.network.overlaps(want.network)]
        if clash and not conf.force_address:
            raise spec.CNIError(spec.ERR_ADDRESS_CONFLICT,
                                f"{device or conf.bridge} already has a conflicting address",
                                f"has {', '.join(map(str, clash))}, wants {want} "
                                "(set forceAddress to replace it)")
        to_remove += clash
        to_add.append(want)
    return to_add, to_remove


def apply_addresses(nl: Rtnl, index: int, add: list[Iface], remove: list[Iface]) -> None:
    for a in remove:
        nl.del_address(index, a)
    for a in add:
        add_address(nl, index, a)


def add_address(nl: Rtnl, index: int, a: Iface) -> None:
    """IPv6 with IFA_F_NODAD: usable at once, no duplicate address detection wait."""
    try:
        nl.add_address(index, a, flags=netlink.IFA_F_NODAD if a.version == 6 else 0)
    except netlink.NetlinkError as exc:
        if not netlink.is_exists(exc):
            raise


HOST_VETH_PREFIX = "veth"


def new_host_veth_name() -> str:
    return HOST_VETH_PREFIX + os.urandom(4).hex()


def is_host_veth_name(name: str) -> bool:
    """``veth`` and 8 hex digits: the host ends this plugin names."""
    tail = name[len(HOST_VETH_PREFIX):]
    return (name.startswith(HOST_VETH_PREFIX) and len(tail) == 8
            and all(c in "0123456789abcdef" for c in tail))


def create_veth(nl: Rtnl, *, ifname: str, netns_fd: int, mtu: int,
                bridge_index: int) -> tuple[str, Any, str]:
    """A veth pair: the host end (random name) up, a port of the bridge; ``ifname`` inside
    the pod's netns, down. (host name, host link message, MAC of ``ifname``)."""
    for _ in range(5):
        host, mac = new_host_veth_name(), random_mac()
        try:
            msg = nl.add_veth(host, peer=ifname, peer_netns_fd=netns_fd, mtu=mtu,
                              master=bridge_index, up=True, peer_mac=mac)
        except netlink.NetlinkError as exc:
            if netlink.is_exists(exc) and netlink.lookup(nl, host) is not None:
                continue  # our random name was taken: try another
            if netlink.is_exists(exc):
                raise spec.CNIError(spec.ERR_INVALID_ENV,
                                    f"interface {ifname} already exists in the container",
                                    "the attachment exists already (container ID reused?)"
                                    ) from exc
            raise netlink.netlink_error("cannot create the veth pair", exc) from exc
        if msg is None or "IFLA_LINK" not in msg or "IFLA_ADDRESS" not in msg:
            msg = nl.link(host)  # a kernel that does not echo the creation
        if msg is None:
            raise spec.CNIError(spec.ERR_NETLINK, f"veth {host} vanished after creation")
        return host, msg, mac
    raise spec.CNIError(spec.ERR_NETLINK, "cannot find a free host veth name")


AF_BRIDGE, RTM_SETLINK, IFLA_PROTINFO = 7, 19, 12
IFLA_BRPORT_STATE, IFLA_BRPORT_MODE = 1, 4
BR_STATE_DISABLED = 0


def _set_port(nl: Rtnl, index: int, attrs: bytes, what: str) -> None:
    """Bridge port attributes of ``index``: RTM_SETLINK of family AF_BRIDGE with
    IFLA_PROTINFO (what ``bridge link set`` sends)."""
    body = struct.pack("=BxHiII", AF_BRIDGE, 0, index, 0, 0) + netlink.attr(
        IFLA_PROTINFO | netlink.NLA_F_NESTED, attrs)
    nl.request(RTM_SETLINK, netlink.NLM_F_ACK, body, what)


def set_hairpin(nl: Rtnl, index: int, name: str, conf: BridgeConfig) -> None:
    """Hairpin mode on the bridge port ``index`` (IFLA_BRPORT_MODE). Not sysfs's
    ``brport/hairpin_mode``: its store only try-locks RTNL and restarts the write while
    another holds it (milliseconds of spinning while a veth is deleted); netlink waits."""
    if not conf.hairpin:
        return
    try:
        _set_port(nl, index, netlink.attr(IFLA_BRPORT_MODE, b"\x01"), f"hairpin mode on {name}")
    except netlink.NetlinkError as exc:
        raise netlink.netlink_error(f"cannot set hairpin mode on {name}", exc) from exc


def disable_port(nl: Rtnl, index: int, name: str) -> None:
    """The bridge port ``index`` to the disabled state: the bridge drops every frame it
    receives there and sends none to it, so whatever is behind it leaves the L2 segment at
    once. ~0.03 ms, against ~0.2 ms for taking it off the bridge (which waits for an RCU
    grace period when it unregisters the port's frame handler). The kernel refuses
    (EBUSY) on a bridge that runs its own STP: the caller then takes the port off."""
    _set_port(nl, index, netlink.attr(IFLA_BRPORT_STATE, bytes([BR_STATE_DISABLED])),
              f"disable bridge port {name}")


def delete_link(nl: Rtnl, name: str) -> bool:
    index = netlink.lookup(nl, name)
    if index is None:
        return False
    try:
        nl.del_link(index)
    except netlink.NetlinkError as exc:
        if not netlink.is_missing(exc):
            raise
    return True


_FORWARDING = {4: "/proc/sys/net/ipv4/ip_forward", 6: "/proc/sys/net/ipv6/conf/all/forwarding"}


def enable_forwarding(versions: set[int]) -> None:
    """Forwarding on for ``versions`` (written only when off); plain fd I/O, not a text file
    object: this runs on every ADD."""
    for v in sorted(versions):
        fd = os.open(_FORWARDING[v], os.O_RDWR | os.O_CLOEXEC)
        try:
            if os.read(fd, 16).strip() != b"1":
                os.pwrite(fd, b"1", 0)
        finally:
            os.close(fd)

