"""VLAN configuration of kpy-bridge: parsing as the reference plugin reads it, the port plan,
and the netlink messages (checked byte by byte against a fake socket)."""
from __future__ import annotations

import struct
from typing import Any

import pytest

from engine.networkdriver.plugins import bridge_config, bridge_vlan, netlink, spec

BASE: dict[str, Any] = {"cniVersion": "1.1.0", "name": "n1", "type": "kpy-bridge",
                        "ipam": {"type": "kpy-host-local"}}


def load(**kw: Any) -> bridge_config.BridgeConfig:
    return bridge_config.load({**BASE, **kw})


def test_trunk_ids_and_ranges_are_merged_sorted_and_unique() -> None:
    conf = load(vlan=10, vlanTrunk=[{"id": 30}, {"minID": 20, "maxID": 22}, {"id": 21}])
    assert conf.vlan == 10 and conf.vlan_trunk == (20, 21, 22, 30) and conf.vlan_filtering
    assert not load().vlan_filtering and load(vlanTrunk=[]).vlan_trunk == ()


@pytest.mark.parametrize("kw", [
    {"vlan": 4095}, {"vlan": -1}, {"vlan": "10"}, {"vlan": True},
    {"vlanTrunk": {"id": 3}}, {"vlanTrunk": [3]}, {"vlanTrunk": [{"id": 0}]},
    {"vlanTrunk": [{"minID": 5}]}, {"vlanTrunk": [{"maxID": 5}]},
    {"vlanTrunk": [{"minID": 9, "maxID": 5}]}, {"vlanTrunk": [{"minID": 1, "maxID": 4095}]},
    {"preserveDefaultVlan": "yes"},
])
def test_bad_vlan_settings_are_invalid_config(kw: dict[str, Any]) -> None:
    with pytest.raises(spec.CNIError) as err:
        load(**kw)
    assert err.value.code == spec.ERR_INVALID_CONFIG


ACCESS = bridge_vlan.BRIDGE_VLAN_INFO_PVID | bridge_vlan.BRIDGE_VLAN_INFO_UNTAGGED


def test_port_plan_matches_the_reference_semantics() -> None:
    assert bridge_vlan.port_plan(load(), 1) == ([], [])
    assert bridge_vlan.port_plan(load(vlan=100), 1) == ([1], [(100, ACCESS)])
    assert bridge_vlan.port_plan(load(vlan=100, preserveDefaultVlan=True), 1) == (
        [], [(100, ACCESS)])
    # a trunk without an access VLAN gets VLAN 1 as its native one
    assert bridge_vlan.port_plan(load(vlanTrunk=[{"id": 7}]), 1) == ([1], [(1, ACCESS), (7, 0)])
    # the access VLAN is not also added tagged
    assert bridge_vlan.port_plan(load(vlan=7, vlanTrunk=[{"minID": 6, "maxID": 8}]), 0) == (
        [], [(7, ACCESS), (6, 0), (8, 0)])


class FakeRtnl:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int, bytes, str]] = []

    def request(self, kind: int, flags: int, body: bytes, what: str) -> list[bytes]:
        self.sent.append((kind, flags, body, what))
        return []


def test_port_vlans_go_in_one_af_bridge_setlink() -> None:
    nl = FakeRtnl()
    bridge_vlan._port_vlans(nl, bridge_vlan.RTM_SETLINK, 42,  # type: ignore[arg-type]
                            [(100, ACCESS), (7, 0)])
    [(kind, flags, body, _)] = nl.sent
    assert kind == 19 and flags == netlink.NLM_F_ACK
    family, index = struct.unpack_from("=B", body)[0], struct.unpack_from("=i", body, 4)[0]
    assert (family, index) == (bridge_vlan.AF_BRIDGE, 42)
    [(kind_spec, raw)] = list(netlink.attrs(body, 16, len(body)))
    assert kind_spec == bridge_vlan.IFLA_AF_SPEC
    inner = list(netlink.attrs(raw, 0, len(raw)))
    assert inner == [(bridge_vlan.IFLA_BRIDGE_FLAGS, struct.pack("=H", 1) + b""),
                     (bridge_vlan.IFLA_BRIDGE_VLAN_INFO, struct.pack("=HH", ACCESS, 100)),
                     (bridge_vlan.IFLA_BRIDGE_VLAN_INFO, struct.pack("=HH", 0, 7))]


def test_gateway_name_must_fit_ifnamsiz() -> None:
    assert bridge_vlan.gateway_name(load(bridge="br0", vlan=4094)) == "br0.4094"
    with pytest.raises(spec.CNIError) as err:
        bridge_vlan.gateway_name(load(bridge="a-long-bridge1", vlan=4094))
    assert err.value.code == spec.ERR_INVALID_CONFIG


class FakeHost(FakeRtnl):
    """Just enough of Rtnl for ensure_gateway: links by name, veths made in place."""

    def __init__(self) -> None:
        super().__init__()
        self.links: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, Any]] = []

    def link(self, name: str) -> dict[str, Any] | None:
        return self.links.get(name)

    def add_veth(self, name: str, *, peer: str, peer_netns_fd: int | None, mtu: int = 0) -> None:
        self.calls.append(("add_veth", (name, peer, peer_netns_fd, mtu)))
        for n in (name, peer):
            self.links[n] = {"index": len(self.links) + 10, "IFLA_IFNAME": n, "flags": 0}

    def set_link(self, index: int, **kw: Any) -> None:
        self.calls.append(("set_link", (index, kw)))


def test_the_vlan_gateway_is_a_veth_whose_peer_is_an_access_port() -> None:
    nl = FakeHost()
    conf = load(bridge="kpyq0", vlan=100, isGateway=True)
    msg, peer = bridge_vlan.ensure_gateway(nl, conf,  # type: ignore[arg-type]
                                           {"index": 3, "IFLA_MTU": 1400})
    assert msg["IFLA_IFNAME"] == "kpyq0.100" and peer.startswith("veth")
    assert nl.calls[0] == ("add_veth", ("kpyq0.100", peer, None, 1400))
    peer_index, gw_index = nl.links[peer]["index"], msg["index"]
    assert ("set_link", (peer_index, {"master": 3, "up": True})) in nl.calls
    assert nl.calls[-1] == ("set_link", (gw_index, {"up": True}))
    [(kind, _, body, _)] = nl.sent  # the peer's VLANs: 100 as PVID, untagged
    assert kind == bridge_vlan.RTM_SETLINK and struct.pack("=HH", ACCESS, 100) in body
    # a second pod of the VLAN reuses it
    again, created = bridge_vlan.ensure_gateway(nl, conf,  # type: ignore[arg-type]
                                                {"index": 3})
    assert again is msg and created == ""


def test_del_finds_the_pod_veth_beside_the_vlan_gateway_in_prev_result() -> None:
    from engine.networkdriver.plugins import bridge

    conf = load(bridge="kpyq0", vlan=100, isGateway=True)
    prev = {"interfaces": [{"name": "kpyq0"}, {"name": "veth0a1b2c3d"},
                           {"name": "eth0", "sandbox": "/run/netns/x"}, {"name": "kpyq0.100"}]}
    assert bridge._host_veth(prev, conf) == "veth0a1b2c3d"
    # two candidates: not ours to pick from, DEL then works through the pod's netns
    prev["interfaces"].append({"name": "veth99999999"})
    assert bridge._host_veth(prev, conf) is None
