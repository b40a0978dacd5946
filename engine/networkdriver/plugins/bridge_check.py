"""CHECK for the bridge plugin: the attachment still matches the ADD result."""
from __future__ import annotations

from engine.networkdriver.plugins import bridge_link, bridge_vlan, ipnet, netlink, spec
from engine.networkdriver.plugins.bridge_config import BridgeConfig

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a plugin exec ~10 ms of CPU (see plugins/value.py)
    from collections.abc import Mapping
    from typing import Any


def _fail(msg: str, details: str = "") -> spec.CNIError:
    return spec.CNIError(spec.ERR_CHECK_FAILED, msg, details)


def check(conf: BridgeConfig, req: spec.Request, prev: Mapping[str, Any], nsfd: int) -> None:
    ifaces = prev.get("interfaces") or []
    mine = [i for i, f in enumerate(ifaces) if f.get("name") == req.ifname and f.get("sandbox")]
    if not mine:
        raise _fail(f"prevResult has no interface {req.ifname} in a sandbox")
    pos = mine[0]
    want_mac = str(ifaces[pos].get("mac", "")).lower()
    want_addrs = {ipnet.ip_interface(ip["address"]) for ip in prev.get("ips", [])
                  if ip.get("interface", pos) == pos}
    with netlink.session(nsfd) as ns:
        index = netlink.lookup(ns, req.ifname)
        if index is None:
            raise _fail(f"interface {req.ifname} is missing from the container", req.netns)
        mac = str(netlink.link_attr(ns, index, "IFLA_ADDRESS")).lower()
        if want_mac and mac != want_mac:
            raise _fail(f"{req.ifname} has MAC {mac}, ADD gave {want_mac}")
        have = {ipnet.ip_interface(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}")
                for m in ns.addresses(index)}
        missing = want_addrs - have
        if missing:
            lost = ", ".join(sorted(map(str, missing)))
            raise _fail(f"{req.ifname} lost addresses", lost)
    with netlink.session() as host:
        br = netlink.lookup(host, conf.bridge)
        if br is None:
            raise _fail(f"bridge {conf.bridge} is missing")
        host_names = {f.get("name") for f in ifaces if not f.get("sandbox")} - {conf.bridge}
        if conf.is_gateway and conf.vlan:
            gateway = bridge_vlan.gateway_name(conf)
            if gateway in host_names and netlink.lookup(host, gateway) is None:
                raise _fail(f"VLAN gateway {gateway} is missing")
            host_names.discard(gateway)
        for name in host_names:
            index = netlink.lookup(host, str(name))
            if index is None:
                raise _fail(f"host veth {name} is missing")
            if netlink.link_attr(host, index, "IFLA_MASTER") != br:
                raise _fail(f"host veth {name} is not a port of {conf.bridge}")
        if not bridge_link.bridge_ports(conf.bridge):
            raise _fail(f"bridge {conf.bridge} has no ports")
    if conf.ip_masq:
        from engine.networkdriver.plugins.bridge import masq_backend

        masq_backend(conf).check(conf.name, req.container_id, want_addrs)
