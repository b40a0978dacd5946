"""An in-process DEL with a reaper: the attachment is cut off (address released, masquerade
chain removed, the host end's bridge port disabled) when DEL returns, and the pair is deleted by the
reaper's thread; an ADD of the same netns and interface waits for it."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.networkdriver.plugins import bridge
from engine.networkdriver.plugins.reaper import Reaper
from tests.integration.networkdriver import helpers
from tests.integration.networkdriver.conftest import Net

pytestmark = pytest.mark.integration


def call(net: Net, command: str, conf: dict[str, Any], ns: str, reaper: Reaper,
         prev: dict[str, Any] | None = None, *, cid: str = "d1") -> dict[str, Any] | None:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": ns,
           "CNI_IFNAME": "eth0", "CNI_PATH": ":".join(map(str, net.bin_dirs)),
           "PATH": os.environ.get("PATH", "")}
    stdin = json.dumps({**conf, "prevResult": prev} if prev else conf).encode()
    code, out = bridge.run(env, stdin, reaper=reaper)
    assert code == 0, out
    return json.loads(out) if out else None


def test_del_cuts_off_at_once_and_the_reaper_deletes_the_pair(net: Net, kpy_bin: Path) -> None:
    ns = net.new_netns()
    conf = net.conf()
    reaper = Reaper()
    result = call(net, "ADD", conf, ns, reaper)
    assert result is not None
    veth = result["interfaces"][1]["name"]
    assert call(net, "DEL", conf, ns, reaper, result) is None
    assert helpers.ip_files(net.data_dir, net.name) == {}
    assert helpers.masq_chains(net.name) == []
    assert helpers.forwarding_ports(net.bridge) == []  # the reaper may not be done: cut off
    assert reaper.wait(timeout=30)
    assert veth not in helpers.links() and "eth0" not in helpers.links(ns)
    assert helpers.bridge_ports(net.bridge) == []


def test_add_after_del_in_the_same_netns_waits_for_the_reaper(net: Net) -> None:
    ns = net.new_netns()
    conf = net.conf()
    reaper = Reaper()
    first = call(net, "ADD", conf, ns, reaper)
    assert first is not None
    call(net, "DEL", conf, ns, reaper, first)
    second = call(net, "ADD", conf, ns, reaper)  # eth0 again: no EEXIST from the old pair
    assert second is not None and "eth0" in helpers.links(ns)
    assert first["interfaces"][1]["name"] not in helpers.links()
    call(net, "DEL", conf, ns, reaper, second)
    assert reaper.wait(timeout=30) and "eth0" not in helpers.links(ns)


def test_a_deleted_pod_is_cut_off_before_the_reaper_deletes_its_pair(net: Net) -> None:
    conf = net.conf()
    reaper = Reaper(workers=1)
    a_ns, b_ns = net.new_netns(), net.new_netns()
    a = call(net, "ADD", conf, a_ns, reaper, cid="a1")
    b = call(net, "ADD", conf, b_ns, reaper, cid="b1")
    assert a is not None and b is not None
    a_ip, b_ip = (r["ips"][0]["address"].split("/")[0] for r in (a, b))
    assert helpers.ping(b_ns, a_ip) and helpers.ping(a_ns, b_ip)
    gate = threading.Event()
    reaper.submit("hold", gate.wait)  # its one worker waits here: no deletion until set
    try:
        call(net, "DEL", conf, a_ns, reaper, a, cid="a1")
        assert "eth0" in helpers.links(a_ns)  # the pair is still there, and yet:
        assert not helpers.ping(b_ns, a_ip), "the deleted pod still answers on the bridge"
        assert not helpers.ping(a_ns, b_ip), "the deleted pod still reaches the bridge"
        assert helpers.ping(b_ns, net.gw4()), "the other pod lost its network"
    finally:
        gate.set()
    assert reaper.wait(timeout=60)
    assert "eth0" not in helpers.links(a_ns)
    call(net, "DEL", conf, b_ns, reaper, b, cid="b1")
    assert reaper.wait(timeout=60) and helpers.bridge_ports(net.bridge) == []
