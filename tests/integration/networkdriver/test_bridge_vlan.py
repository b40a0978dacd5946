"""kpy-bridge VLANs on a real bridge. The kernel decides what can be checked: with bridge VLAN
filtering (CONFIG_BRIDGE_VLAN_FILTERING) the port must be an access port of ``vlan`` and a
trunk of ``vlanTrunk``, the gateway on ``<bridge>.<vlan>``; without it, ADD must fail with
the spec's error and leave nothing behind. Which one applies is asked of iproute2, not of
the plugin."""
from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.integration.networkdriver import helpers
from tests.integration.networkdriver.conftest import Net

pytestmark = pytest.mark.integration


def kernel_filters_vlans() -> bool:
    probe = f"kpyv{helpers.suffix()}"
    proc = subprocess.run(["ip", "link", "add", probe, "type", "bridge", "vlan_filtering", "1"],
                          capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", probe], capture_output=True, check=False)
    return proc.returncode == 0


def port_vlans(dev: str) -> dict[int, set[str]]:
    out = subprocess.run(["bridge", "-j", "vlan", "show", "dev", dev], capture_output=True,
                         text=True, check=True).stdout
    entries = json.loads(out or "[]")
    return {v["vlan"]: set(v.get("flags", [])) for e in entries for v in e.get("vlans", [])}


def vlan_conf(net: Net) -> dict[str, Any]:
    return net.conf(dual=False, isDefaultGateway=False, isGateway=True, ipMasq=False, vlan=100,
                    vlanTrunk=[{"id": 200}, {"minID": 300, "maxID": 301}])


def test_vlan_access_and_trunk_ports(net: Net) -> None:
    ns = net.new_netns()
    conf = vlan_conf(net)
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="v1")
    if not kernel_filters_vlans():
        assert code == 1 and result is not None and result["code"] == 2, result
        assert "VLAN filtering" in result["msg"]
        assert net.bridge not in helpers.links()  # not even the bridge was left
        assert "eth0" not in helpers.links(ns)
        assert helpers.ip_files(net.data_dir, net.name) == {}
        return
    assert code == 0 and result is not None, result
    gateway = f"{net.bridge}.100"
    names = [i["name"] for i in result["interfaces"]]
    assert names[0] == net.bridge and names[3] == gateway
    with open(f"/sys/class/net/{net.bridge}/bridge/vlan_filtering") as f:
        assert f.read().strip() == "1"
    assert port_vlans(names[1]) == {100: {"PVID", "Egress Untagged"}, 200: set(),
                                    300: set(), 301: set()}
    assert f"{net.gw4()}/24" in helpers.addresses(None, gateway)
    assert helpers.ping(ns, net.gw4())
    assert net.run("kpy-bridge", "DEL", {**conf, "prevResult": result}, netns=ns,
                   cid="v1") == (0, None)
    assert names[1] not in helpers.links() and gateway in helpers.links()
    assert helpers.ip_files(net.data_dir, net.name) == {}
    net.bridges.insert(0, gateway)  # the VLAN's gateway outlives pods, as the reference's


def test_vlan_on_an_existing_bridge(net: Net) -> None:
    subprocess.run(["ip", "link", "add", net.bridge, "type", "bridge"], check=True)
    ns = net.new_netns()
    conf = vlan_conf(net)
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="v2")
    if not kernel_filters_vlans():
        assert code == 1 and result is not None and result["code"] == 2, result
        assert net.bridge in helpers.links() and helpers.bridge_ports(net.bridge) == []
        assert helpers.ip_files(net.data_dir, net.name) == {}
        return
    assert code == 0 and result is not None, result
    net.bridges.insert(0, f"{net.bridge}.100")
    with open(f"/sys/class/net/{net.bridge}/bridge/vlan_filtering") as f:
        assert f.read().strip() == "1"
    assert net.run("kpy-bridge", "DEL", {**conf, "prevResult": result}, netns=ns,
                   cid="v2") == (0, None)
