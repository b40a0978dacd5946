"""cnitool (libcni) driving our plugins and the pinned reference plugins side by side."""
from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.networkdriver.plugins import install
from tests.harness.prereq import need_binary, need_tool
from tests.integration.networkdriver import agent_harness, helpers

pytestmark = pytest.mark.e2e

REFERENCE = ("bridge", "host-local", "loopback")


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf_dir = root / "net.d"
        self.bin_dir = root / "bin"
        self.data_dir = root / "ipam"
        self.conf_dir.mkdir()
        self.netns: list[str] = []
        self.networks: list[str] = []
        self.bridges: list[str] = []
        self.attached: list[tuple[str, str]] = []
        self.tool = str(need_tool("cnitool"))
        install.install(self.bin_dir)
        for name in REFERENCE:
            os.symlink(need_tool(name), self.bin_dir / name)

    def network(self, *, bridge_type: str, ipam_type: str, loopback: str | None = None,
                version: str = "1.1.0") -> str:
        s = helpers.suffix()
        name, bridge = f"kpye-{s}", f"kpye{s}"
        subnet4, subnet6 = next(helpers.iter_subnets())
        plugins: list[dict[str, Any]] = [{
            "type": bridge_type, "bridge": bridge, "isDefaultGateway": True, "ipMasq": True,
            "hairpinMode": True, "mtu": 1400,
            "ipam": {"type": ipam_type, "dataDir": str(self.data_dir),
                     "ranges": [[{"subnet": subnet4}], [{"subnet": subnet6}]]}}]
        if loopback:
            plugins.append({"type": loopback})
        (self.conf_dir / f"{name}.conflist").write_text(json.dumps(
            {"cniVersion": version, "name": name, "plugins": plugins}))
        self.networks.append(name)
        self.bridges.append(bridge)
        return name

    def new_netns(self) -> str:
        name = f"kpye-{helpers.suffix()}"
        self.netns.append(name)
        return helpers.add_netns(name)

    def cnitool(self, command: str, network: str, netns: str) -> tuple[int, str]:
        env = {**os.environ, "NETCONFPATH": str(self.conf_dir), "CNI_PATH": str(self.bin_dir)}
        proc = subprocess.run([self.tool, command, network, netns], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        return proc.returncode, proc.stdout + proc.stderr

    def add(self, network: str, netns: str) -> dict[str, Any]:
        self.attached.append((network, netns))
        code, out = self.cnitool("add", network, netns)
        assert code == 0, out
        return json.loads(out)


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    need_binary("iptables-restore", "apt-get install iptables")
    need_binary("busybox", "apt-get install busybox-static")
    e = Env(tmp_path)
    try:
        yield e
    finally:
        for network, ns in reversed(e.attached):
            e.cnitool("del", network, ns)
        for ns in e.netns:
            helpers.del_netns(ns)
        for i, network in enumerate(e.networks):
            helpers.cleanup_network(network, [e.bridges[i]])
        shutil.rmtree(e.data_dir, ignore_errors=True)


FLAVOURS = {"ours": ("kpy-bridge", "kpy-host-local", "kpy-loopback"),
            "reference": ("bridge", "host-local", "loopback")}


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_add_check_del_gc(env: Env, flavour: str) -> None:
    add_check_del_gc(env, flavour)


def test_add_check_del_gc_status_version_through_the_agent(env: Env, tmp_path: Path) -> None:
    """Our executables as thin shims of the resident agent: the same behaviour."""
    sock = agent_harness.socket_in(tmp_path)
    agent_harness.install_with_agent(env.bin_dir, sock)
    served = agent_harness.ThreadAgent(sock)
    try:
        add_check_del_gc(env, "ours")
        version = subprocess.run([str(env.bin_dir / "kpy-bridge")], capture_output=True,
                                 env={**os.environ, "CNI_COMMAND": "VERSION"}, check=True)
        assert "1.1.0" in json.loads(version.stdout)["supportedVersions"]
    finally:
        served.close()
    # add, check, del, add, gc, status: each through both plugins of the conflist, + our
    # VERSION (libcni asks plugins for their versions too: at least these went to the agent)
    assert served.agent.served >= 13


def add_check_del_gc(env: Env, flavour: str) -> None:
    bridge, ipam, lo = FLAVOURS[flavour]
    network = env.network(bridge_type=bridge, ipam_type=ipam, loopback=lo)
    ns = env.new_netns()
    result = env.add(network, ns)
    pod_ip = ipaddress.ip_interface(result["ips"][0]["address"])
    assert env.cnitool("check", network, ns)[0] == 0
    assert helpers.links(ns)["lo"]["up"]
    assert helpers.ping(ns, str(next(iter(ipaddress.ip_network(pod_ip.network).hosts()))))
    assert env.cnitool("del", network, ns)[0] == 0
    assert "eth0" not in helpers.links(ns)
    assert helpers.ip_files(env.data_dir, network) == {}
    # ADD again, then GC with no valid attachment (what cnitool sends): everything released
    env.add(network, ns)
    assert helpers.ip_files(env.data_dir, network)
    code, out = env.cnitool("gc", network, ns)
    assert code == 0, out
    assert helpers.ip_files(env.data_dir, network) == {}
    assert "eth0" not in helpers.links(ns)
    assert env.cnitool("status", network, ns)[0] == 0


def shape(obj: Any) -> Any:
    """The JSON structure without values (keys, list lengths, value types)."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in sorted(obj.items()) if k != "cniVersion"}
    if isinstance(obj, list):
        return [shape(v) for v in obj]
    return type(obj).__name__


def relative(result: dict[str, Any]) -> list[tuple[str, int, str]]:
    """Each address as (family, offset in its subnet, gateway offset)."""
    out = []
    for ip in result["ips"]:
        iface = ipaddress.ip_interface(ip["address"])
        base = int(iface.network.network_address)
        out.append((f"v{iface.version}/{iface.network.prefixlen}", int(iface.ip) - base,
                    str(int(ipaddress.ip_address(ip["gateway"])) - base)))
    return out


def kernel_view(ns: str, result: dict[str, Any]) -> dict[str, Any]:
    """Links, addresses and routes of the pod, with its own addresses made symbolic."""
    names = {}
    for n, ip in enumerate(result["ips"]):
        iface = ipaddress.ip_interface(ip["address"])
        names[str(iface.network)] = f"<net{n}>"
        names[str(iface)] = f"<addr{n}>"
        names[str(iface.ip)] = f"<ip{n}>"
        names[ip["gateway"]] = f"<gw{n}>"

    def symbolic(text: str) -> str:
        return " ".join(names.get(word, word) for word in text.split())

    link = helpers.links(ns)["eth0"]
    return {"mtu": link["mtu"], "up": link["up"], "lo": helpers.links(ns)["lo"]["up"],
            "routes4": sorted(symbolic(r) for r in helpers.routes(ns, 4)),
            "routes6": sorted(symbolic(r) for r in helpers.routes(ns, 6)),
            "addresses": sorted(symbolic(a) for a in helpers.addresses(ns, "eth0")
                                if not a.startswith("fe80"))}


def test_ours_and_reference_agree_on_result_shape_and_kernel_state(env: Env) -> None:
    ours = env.network(bridge_type="kpy-bridge", ipam_type="kpy-host-local",
                       loopback="kpy-loopback")
    ref = env.network(bridge_type="bridge", ipam_type="host-local", loopback="loopback")
    ns_ours, ns_ref = env.new_netns(), env.new_netns()
    r_ours, r_ref = env.add(ours, ns_ours), env.add(ref, ns_ref)
    assert shape(r_ours) == shape(r_ref)
    assert relative(r_ours) == relative(r_ref)
    assert [r["dst"] for r in r_ours["routes"]] == [r["dst"] for r in r_ref["routes"]]
    assert kernel_view(ns_ours, r_ours) == kernel_view(ns_ref, r_ref)


@pytest.mark.parametrize("bridge, ipam", [("kpy-bridge", "host-local"),
                                          ("bridge", "kpy-host-local")])
def test_mixed_chains(env: Env, bridge: str, ipam: str) -> None:
    network = env.network(bridge_type=bridge, ipam_type=ipam, loopback="loopback")
    ns = env.new_netns()
    result = env.add(network, ns)
    owner = helpers.ip_files(env.data_dir, network)
    addr = ipaddress.ip_interface(result["ips"][0]["address"])
    assert owner[str(addr.ip)].endswith(b"\r\neth0")
    assert env.cnitool("check", network, ns)[0] == 0
    assert env.cnitool("del", network, ns)[0] == 0
    assert helpers.ip_files(env.data_dir, network) == {}


def test_shared_data_dir_with_host_local_gives_no_duplicate(env: Env) -> None:
    """Both IPAM plugins, concurrently, on one network and data dir: distinct addresses."""
    subnet = next(helpers.iter_subnets())[0]
    conf = {"cniVersion": "1.0.0", "name": f"kpye-{helpers.suffix()}", "type": "x",
            "ipam": {"type": "x", "dataDir": str(env.data_dir), "subnet": subnet}}

    def add(i: int) -> dict[str, Any]:
        kind = "kpy-host-local" if i % 2 else "host-local"
        code, res = helpers.run_plugin([env.bin_dir], kind, "ADD", conf, netns="/x",
                                       cid=f"c{i}")
        assert code == 0, res
        assert res is not None
        return res

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(add, range(40)))
    addrs = [r["ips"][0]["address"] for r in results]
    assert len(set(addrs)) == 40
    files = helpers.ip_files(env.data_dir, conf["name"])
    assert sorted(files) == sorted(a.split("/")[0] for a in addrs)
    for i in range(40):  # release across implementations: ours frees reference's and back
        kind = "host-local" if i % 2 else "kpy-host-local"
        assert helpers.run_plugin([env.bin_dir], kind, "DEL", conf, netns="/x",
                                  cid=f"c{i}")[0] == 0
    assert helpers.ip_files(env.data_dir, conf["name"]) == {}
