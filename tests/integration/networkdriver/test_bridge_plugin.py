"""kpy-bridge + kpy-host-local as executables on real netns, bridges and veths."""
from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from engine.networkdriver.plugins import ipnet, netlink
from tests.integration.networkdriver import helpers
from tests.integration.networkdriver.conftest import Net

pytestmark = pytest.mark.integration


def test_add_check_del_dual_stack(net: Net) -> None:
    ns = net.new_netns()
    conf = net.conf()
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="c1")
    assert code == 0, result
    assert result is not None
    assert result["interfaces"][0]["name"] == net.bridge
    assert result["interfaces"][2] | {"mac": "x"} == {"name": "eth0", "mac": "x", "sandbox": ns}
    assert result["interfaces"][0]["mac"] == helpers.links()[net.bridge]["mac"]
    v4 = ipaddress.ip_interface(result["ips"][0]["address"])
    v6 = ipaddress.ip_interface(result["ips"][1]["address"])
    assert v4 in ipaddress.ip_network(net.subnet4) and v6.version == 6
    assert all(ip["interface"] == 2 for ip in result["ips"])
    # the pod side
    pod = helpers.links(ns)
    assert pod["eth0"]["up"] and pod["eth0"]["mtu"] == 1400
    assert pod["eth0"]["mac"] == result["interfaces"][2]["mac"]
    addrs = helpers.addresses(ns, "eth0")
    assert str(v4) in addrs
    assert addrs[str(v6)] & netlink.IFA_F_NODAD
    assert f"default via {net.gw4()} dev eth0" in " ".join(helpers.routes(ns))
    assert any(r.startswith("default via") for r in helpers.routes(ns, 6))
    # the host side
    host = helpers.links()
    veth = result["interfaces"][1]["name"]
    assert host[veth]["master"] == host[net.bridge]["index"]
    assert host[veth]["mtu"] == 1400
    with open(f"/sys/class/net/{veth}/brport/hairpin_mode") as f:
        assert f.read().strip() == "1"
    assert f"{net.gw4()}/24" in helpers.addresses(None, net.bridge)
    assert len(helpers.masq_chains(net.name)) >= 4
    assert helpers.ip_files(net.data_dir, net.name)[str(v4.ip)] == b"c1\r\neth0"
    # CHECK with the ADD result, then DEL (twice), then DEL with the netns gone
    assert net.run("kpy-bridge", "CHECK", {**conf, "prevResult": result}, netns=ns,
                   cid="c1") == (0, None)
    assert net.run("kpy-bridge", "DEL", {**conf, "prevResult": result}, netns=ns,
                   cid="c1") == (0, None)
    assert "eth0" not in helpers.links(ns)
    assert veth not in helpers.links()
    assert helpers.ip_files(net.data_dir, net.name) == {}
    assert helpers.masq_chains(net.name) == []
    assert net.run("kpy-bridge", "DEL", conf, netns=ns, cid="c1") == (0, None)
    helpers.del_netns(ns.rsplit("/", 1)[1])
    assert net.run("kpy-bridge", "DEL", conf, netns=ns, cid="c1") == (0, None)


def test_check_detects_a_removed_address(net: Net) -> None:
    ns = net.new_netns()
    conf = net.conf(dual=False)
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="c1")
    assert code == 0 and result is not None
    helpers.ns_exec(ns, "ip", "addr", "flush", "dev", "eth0")
    code, err = net.run("kpy-bridge", "CHECK", {**conf, "prevResult": result}, netns=ns,
                        cid="c1")
    assert code != 0 and err is not None and err["code"] >= 100
    assert "lost addresses" in err["msg"]


def test_promisc_and_0_4_0_result(net: Net) -> None:
    ns = net.new_netns()
    code, result = net.run("kpy-bridge", "ADD", net.conf(version="0.4.0", promiscMode=True),
                           netns=ns, cid="c1")
    assert code == 0 and result is not None
    assert result["cniVersion"] == "0.4.0"
    assert {ip["version"] for ip in result["ips"]} == {"4", "6"}
    assert helpers.links()[net.bridge]["flags"] & netlink.IFF_PROMISC


def assert_nothing_left(net: Net, ns: str, ports_before: list[str], ips_before: dict) -> None:
    assert "eth0" not in helpers.links(ns)
    assert helpers.bridge_ports(net.bridge) == ports_before
    assert helpers.ip_files(net.data_dir, net.name) == ips_before


def test_malformed_json(net: Net) -> None:
    ns = net.new_netns()
    code, err = net.run("kpy-bridge", "ADD", b'{"cniVersion": "1.1.0", "name":', netns=ns,
                        cid="c1")
    assert code == 1 and err is not None and err["code"] == 6
    assert_nothing_left(net, ns, [], {})
    assert net.bridge not in helpers.links()


def test_unknown_cni_version(net: Net) -> None:
    ns = net.new_netns()
    code, err = net.run("kpy-bridge", "ADD", net.conf(cniVersion="2.0.0"), netns=ns, cid="c1")
    assert code == 1 and err is not None and err["code"] == 1
    assert "incompatible" in err["msg"]
    assert net.bridge not in helpers.links()


def test_ipam_type_with_a_path(net: Net) -> None:
    ns = net.new_netns()
    conf = net.conf()
    conf["ipam"]["type"] = "../../usr/bin/kpy-host-local"
    code, err = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="c1")
    assert code == 1 and err is not None and err["code"] == 7
    assert_nothing_left(net, ns, [], {})


def test_netns_that_does_not_exist(net: Net) -> None:
    code, err = net.run("kpy-bridge", "ADD", net.conf(), netns="/run/netns/kpyt-absent-x",
                        cid="c1")
    assert code == 1 and err is not None and err["code"] == 3
    assert helpers.ip_files(net.data_dir, net.name) == {}


def test_interface_name_too_long(net: Net) -> None:
    ns = net.new_netns()
    code, err = net.run("kpy-bridge", "ADD", net.conf(), netns=ns, cid="c1",
                        ifname="eth0-much-too-long")
    assert code == 1 and err is not None and err["code"] == 4
    assert_nothing_left(net, ns, [], {})


def test_exhausted_range(net: Net) -> None:
    conf = net.conf(dual=False)
    conf["ipam"]["ranges"] = [[{"subnet": net.subnet4, "rangeStart": net.subnet4[:-4] + "10",
                                "rangeEnd": net.subnet4[:-4] + "10"}]]
    first, second = net.new_netns(), net.new_netns()
    assert net.run("kpy-bridge", "ADD", conf, netns=first, cid="c1")[0] == 0
    ports, ips = helpers.bridge_ports(net.bridge), helpers.ip_files(net.data_dir, net.name)
    code, err = net.run("kpy-bridge", "ADD", conf, netns=second, cid="c2")
    assert code == 1 and err is not None and err["code"] == 100
    assert "no IP addresses available" in err["msg"]
    assert_nothing_left(net, second, ports, ips)


def test_container_id_reused(net: Net) -> None:
    conf = net.conf(dual=False)
    first, second = net.new_netns(), net.new_netns()
    code, result = net.run("kpy-bridge", "ADD", conf, netns=first, cid="same")
    assert code == 0
    ports, ips = helpers.bridge_ports(net.bridge), helpers.ip_files(net.data_dir, net.name)
    code, err = net.run("kpy-bridge", "ADD", conf, netns=second, cid="same")
    assert code == 1 and err is not None and err["code"] == 101
    assert_nothing_left(net, second, ports, ips)
    assert net.run("kpy-bridge", "CHECK", {**conf, "prevResult": result}, netns=first,
                   cid="same") == (0, None)


def test_bridge_with_a_conflicting_address(net: Net) -> None:
    ns = net.new_netns()
    with netlink.session() as nl:
        nl.add_link(net.bridge, "bridge")
        index = netlink.lookup(nl, net.bridge)
        assert index is not None
        nl.add_address(index, ipnet.ip_interface(net.subnet4[:-4] + "200/16"))
    conf = net.conf(dual=False)
    code, err = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="c1")
    assert code == 1 and err is not None and err["code"] == 102
    assert "conflicting address" in err["msg"]
    assert_nothing_left(net, ns, [], {})
    assert v4_addresses(net.bridge) == [net.subnet4[:-4] + "200/16"]
    code, _ = net.run("kpy-bridge", "ADD", {**conf, "forceAddress": True}, netns=ns, cid="c1")
    assert code == 0
    assert v4_addresses(net.bridge) == [f"{net.gw4()}/24"]


def v4_addresses(ifname: str) -> list[str]:
    return [a for a in helpers.addresses(None, ifname) if ":" not in a]


def test_stale_lock_after_kill_9_mid_add(net: Net) -> None:
    """An ADD killed while waiting on the IPAM lock leaves nothing; the next ADD works."""
    conf = net.conf(dual=False)
    lock_dir = net.data_dir / net.name
    lock_dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, time\n"
        f"fd = os.open({str(lock_dir / 'lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    victim_ns, next_ns = net.new_netns(), net.new_netns()
    try:
        # the plugin starts faster than this python: let the holder take the lock first
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        import json
        import os

        env = {**os.environ, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "victim",
               "CNI_NETNS": victim_ns, "CNI_IFNAME": "eth0",
               "CNI_PATH": str(net.bin_dirs[0])}
        victim = subprocess.Popen([str(net.bin_dirs[0] / "kpy-bridge")], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert victim.stdin is not None
        victim.stdin.write(json.dumps(conf).encode())
        victim.stdin.close()
        import time

        # wait until the victim holds the lock file open (it is waiting for the flock)
        deadline = time.monotonic() + 30
        while not opened(victim.pid, lock_dir / "lock"):
            assert victim.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        victim.kill()
        victim.wait()
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert (lock_dir / "lock").exists()
    assert_nothing_left(net, victim_ns, helpers.bridge_ports(net.bridge), {})
    code, result = net.run("kpy-bridge", "ADD", conf, netns=next_ns, cid="next", timeout=20)
    assert code == 0, result
    assert list(helpers.ip_files(net.data_dir, net.name).values()) == [b"next\r\neth0"]


def opened(pid: int, path: object) -> bool:
    import os

    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def test_gc_releases_addresses_and_masquerade_of_invalid_attachments(net: Net) -> None:
    conf = net.conf(dual=False)
    keep_ns, gone_ns = net.new_netns(), net.new_netns()
    assert net.run("kpy-bridge", "ADD", conf, netns=keep_ns, cid="keep")[0] == 0
    assert net.run("kpy-bridge", "ADD", conf, netns=gone_ns, cid="gone")[0] == 0
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    code, out = helpers.run_plugin(net.bin_dirs, "kpy-bridge", "GC", gc_conf, netns="",
                                   cid="", ifname="")
    assert (code, out) == (0, None)
    assert list(helpers.ip_files(net.data_dir, net.name).values()) == [b"keep\r\neth0"]
    chains = helpers.masq_chains(net.name)
    assert chains and all("id=keep" in line for line in chains)
    code, out = helpers.run_plugin(net.bin_dirs, "kpy-bridge", "STATUS", conf, netns="", cid="",
                                   ifname="")
    assert (code, out) == (0, None)
