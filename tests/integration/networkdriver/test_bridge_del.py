"""kpy-bridge DEL: by the host end of the pair when prevResult names it (no entering the pod's
netns), by the pod's interface otherwise (its addresses then find the masquerade rules), and
never a host interface that is not our bridge's port."""
from __future__ import annotations

import pytest

from engine.networkdriver.plugins import netlink
from tests.integration.networkdriver import helpers
from tests.integration.networkdriver.conftest import Net

pytestmark = pytest.mark.integration


def test_del_with_prev_result_removes_the_pair_from_the_host_side(net: Net) -> None:
    ns = net.new_netns()
    conf = net.conf()
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="h1")
    assert code == 0 and result is not None, result
    veth = result["interfaces"][1]["name"]
    # no CNI_NETNS at all: only the host end can be deleted, and the pod end goes with it
    assert net.run("kpy-bridge", "DEL", {**conf, "prevResult": result}, netns="",
                   cid="h1") == (0, None)
    assert veth not in helpers.links()
    assert "eth0" not in helpers.links(ns)
    assert helpers.ip_files(net.data_dir, net.name) == {}
    assert helpers.masq_chains(net.name) == []


def test_del_without_prev_result_finds_the_masquerade_rules_from_the_pod(net: Net) -> None:
    ns = net.new_netns()
    conf = net.conf()
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="p1")
    assert code == 0 and result is not None, result
    assert helpers.masq_chains(net.name)
    assert net.run("kpy-bridge", "DEL", conf, netns=ns, cid="p1") == (0, None)
    assert "eth0" not in helpers.links(ns)
    assert result["interfaces"][1]["name"] not in helpers.links()
    assert helpers.masq_chains(net.name) == []
    assert helpers.ip_files(net.data_dir, net.name) == {}


def test_del_leaves_a_host_link_that_is_not_our_port(net: Net) -> None:
    """A prevResult naming a host veth that is not on our bridge (stale, or forged) must not
    delete it; the pod's own interface is still removed through its netns."""
    ns = net.new_netns()
    conf = net.conf()
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="s1")
    assert code == 0 and result is not None, result
    stranger = f"veth{helpers.suffix()}00"  # named like our host ends, on no bridge
    with netlink.session() as nl:
        nl.add_link(stranger, "veth")  # the kernel names the peer
    try:
        forged = {**result, "interfaces": [result["interfaces"][0], {"name": stranger},
                                           result["interfaces"][2]]}
        assert net.run("kpy-bridge", "DEL", {**conf, "prevResult": forged}, netns=ns,
                       cid="s1") == (0, None)
        assert stranger in helpers.links()
        assert "eth0" not in helpers.links(ns)
        assert result["interfaces"][1]["name"] not in helpers.links()
        assert helpers.masq_chains(net.name) == []
    finally:
        with netlink.session() as nl:
            index = netlink.lookup(nl, stranger)
            if index is not None:
                nl.del_link(index)
