"""Traffic through kpy-bridge: pod<->pod, pod<->node, hairpin, masquerade toward a test host.

Every target is a netns this test made or the node's own bridge address.
"""
from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator

import pytest

from engine.networkdriver.plugins import ipnet, netlink, setns
from tests.integration.networkdriver import helpers
from tests.integration.networkdriver.conftest import Net

pytestmark = pytest.mark.integration


def attach(net: Net, cid: str, **extra: object) -> tuple[str, list[str]]:
    ns = net.new_netns()
    code, result = net.run("kpy-bridge", "ADD", net.conf(**extra), netns=ns, cid=cid)
    assert code == 0, result
    assert result is not None
    return ns, [str(ipaddress.ip_interface(ip["address"]).ip) for ip in result["ips"]]


def test_pod_to_pod_pod_to_node_and_node_to_pod(net: Net) -> None:
    ns_a, (a4, a6) = attach(net, "a")
    ns_b, (b4, b6) = attach(net, "b")
    assert helpers.ping(ns_a, b4)
    assert helpers.ping(ns_b, a4)
    assert helpers.ping(ns_a, b6)
    assert helpers.ping(ns_b, a6)
    assert helpers.ping(ns_a, net.gw4())  # pod -> node (its bridge address)
    assert helpers.ping(None, b4)  # node -> pod
    assert helpers.ping(None, a6)


def _nat(rules: list[list[str]], action: str) -> None:
    """-I (first, ahead of the pod's masquerade chain, whose ACCEPT ends nat) or -D."""
    for rule in rules:
        subprocess.run(["iptables", "-w", "-t", "nat", action, *rule], check=action == "-I",
                       capture_output=True)


def test_hairpin_lets_a_pod_reach_itself_through_a_dnat(net: Net) -> None:
    ns, (pod4, _) = attach(net, "a")
    vip = str(next(helpers.iter_subnets())[0]).replace(".0/24", ".9")  # routed via the node
    tag = ["-m", "comment", "--comment", f"kpyt hairpin {net.name}"]
    rules = [["PREROUTING", "-s", pod4, "-d", vip, *tag, "-j", "DNAT", "--to-destination", pod4],
             ["POSTROUTING", "-s", pod4, "-d", pod4, *tag, "-j", "MASQUERADE"]]
    _nat(rules, "-I")
    try:
        assert helpers.ping(ns, vip)
        veth = next(name for name, link in helpers.links().items()
                    if link["master"] == helpers.links()[net.bridge]["index"])
        with open(f"/sys/class/net/{veth}/brport/hairpin_mode", "w") as f:
            f.write("0")
        subprocess.run(["conntrack", "-D", "-s", pod4], capture_output=True, check=False)
        assert not helpers.ping(ns, vip)  # the control: without hairpin the frame is dropped
    finally:
        _nat(rules, "-D")


@pytest.fixture()
def test_host(net: Net) -> Iterator[tuple[str, str]]:
    """A netns standing for an outside host: linked to the node, no route to pod subnets."""
    outside = net.new_netns()
    s = helpers.suffix()
    subnet = ipaddress.ip_network(next(helpers.iter_subnets())[0])
    node_ip, host_ip = str(subnet.network_address + 1), str(subnet.network_address + 2)
    fd = setns.open_netns(outside)
    try:
        with netlink.session() as nl:
            nl.add_veth(f"kpyo{s}", peer="eth0", peer_netns_fd=fd)
            index = netlink.lookup(nl, f"kpyo{s}")
            assert index is not None
            nl.add_address(index, ipnet.ip_interface(f"{node_ip}/24"))
            nl.set_link(index, up=True)
        with netlink.session(fd) as nl:
            index = netlink.lookup(nl, "eth0")
            assert index is not None
            nl.add_address(index, ipnet.ip_interface(f"{host_ip}/24"))
            nl.set_link(index, up=True)
    finally:
        import os

        os.close(fd)
    net.bridges.append(f"kpyo{s}")
    yield outside, host_ip


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_masquerade_only_with_ip_masq(net: Net, test_host: tuple[str, str],
                                      backend: str) -> None:
    outside, host_ip = test_host
    ns_masq, _ = attach(net, "masq", ipMasqBackend=backend)
    assert helpers.ping(ns_masq, host_ip)
    nft = helpers.nft_masq_rules(net.name)
    assert len(nft) == (6 if backend == "nftables" else 0)  # 3 rules per family
    iptables = len(helpers.masq_chains(net.name)) - len(nft)
    assert iptables == 0 if backend == "nftables" else iptables >= 4
    # a pod of the same bridge without ipMasq: the test host cannot answer its address
    ns_plain, _ = attach(net, "plain", ipMasq=False)
    assert not helpers.ping(ns_plain, host_ip)
    assert helpers.routes(outside, 4) == [f"{host_ip.rsplit('.', 1)[0]}.0/24 dev eth0 proto "
                                          f"kernel scope link src {host_ip}"]
