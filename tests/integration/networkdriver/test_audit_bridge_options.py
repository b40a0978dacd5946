"""Bridge options of issue #6 not covered elsewhere: isGateway without isDefaultGateway, no
gateway at all, and a 1.0.0 configuration end to end (ADD, CHECK, DEL)."""
from __future__ import annotations

import ipaddress

import pytest

from tests.integration.networkdriver import helpers
from tests.integration.networkdriver.conftest import Net

pytestmark = pytest.mark.integration


def test_is_gateway_gives_the_bridge_the_gateway_but_no_default_route(net: Net) -> None:
    """... and the pod gets IPAM's routes, on the interface name the runtime asked for."""
    ns = net.new_netns()
    conf = net.conf(dual=False, isGateway=True, isDefaultGateway=False, ipMasq=False)
    conf["ipam"]["routes"] = [{"dst": "192.168.77.0/24"}]
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="gw", ifname="net1")
    assert code == 0 and result is not None, result
    assert result["interfaces"][2]["name"] == "net1" and "net1" in helpers.links(ns)
    assert f"{net.gw4()}/24" in helpers.addresses(None, net.bridge)
    assert result["ips"][0]["gateway"] == net.gw4()
    assert [r["dst"] for r in result["routes"]] == ["192.168.77.0/24"]
    assert f"192.168.77.0/24 via {net.gw4()} dev net1" in helpers.routes(ns)
    assert not [r for r in helpers.routes(ns) if r.startswith("default")]
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read().strip() == "1"
    assert helpers.ping(ns, net.gw4())  # the node answers on its gateway address
    assert net.run("kpy-bridge", "DEL", {**conf, "prevResult": result}, netns=ns,
                   cid="gw", ifname="net1") == (0, None)
    assert "net1" not in helpers.links(ns)


def test_without_is_gateway_the_bridge_gets_no_address(net: Net) -> None:
    ns = net.new_netns()
    conf = net.conf(dual=False, isDefaultGateway=False, ipMasq=False)
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="nogw")
    assert code == 0 and result is not None, result
    assert not [a for a in helpers.addresses(None, net.bridge) if ":" not in a]
    assert not [r for r in helpers.routes(ns) if r.startswith("default")]
    pod = ipaddress.ip_interface(result["ips"][0]["address"])
    assert str(pod) in helpers.addresses(ns, "eth0")


def test_a_1_0_0_config_adds_checks_and_deletes(net: Net) -> None:
    ns = net.new_netns()
    conf = net.conf(version="1.0.0")
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="v100")
    assert code == 0 and result is not None, result
    assert result["cniVersion"] == "1.0.0"
    assert all("version" not in ip for ip in result["ips"])  # 0.4.0's field, gone in 1.0.0
    assert all(set(i) <= {"name", "mac", "sandbox"} for i in result["interfaces"])
    with_prev = {**conf, "prevResult": result}
    assert net.run("kpy-bridge", "CHECK", with_prev, netns=ns, cid="v100") == (0, None)
    assert net.run("kpy-bridge", "DEL", with_prev, netns=ns, cid="v100") == (0, None)
    assert helpers.ip_files(net.data_dir, net.name) == {}
    assert helpers.masq_chains(net.name) == []
    # GC and STATUS are 1.1.0 verbs: a 1.0.0 config gets the spec's version error
    for verb in ("GC", "STATUS"):
        code, err = helpers.run_plugin(net.bin_dirs, "kpy-bridge", verb, conf, netns="",
                                       cid="", ifname="")
        assert code == 1 and err is not None and err["code"] == 1, err


def test_del_with_prev_result_after_the_netns_is_gone(net: Net) -> None:
    """The usual runtime order on a crash: the netns is gone, the cached result is not. DEL
    still succeeds and releases the address and the masquerade chain."""
    ns = net.new_netns()
    conf = net.conf(dual=False)
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="gone")
    assert code == 0 and result is not None, result
    veth = result["interfaces"][1]["name"]
    helpers.del_netns(ns.rsplit("/", 1)[1])
    assert net.run("kpy-bridge", "DEL", {**conf, "prevResult": result}, netns=ns,
                   cid="gone") == (0, None)
    assert helpers.ip_files(net.data_dir, net.name) == {}
    assert helpers.masq_chains(net.name) == []
    assert veth not in helpers.links()
