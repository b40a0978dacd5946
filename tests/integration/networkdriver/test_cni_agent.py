"""Our plugin executables served by the resident CNI agent, on real netns and bridges: the
same results as the plugins run themselves, and the cases where the agent must not serve."""
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
from tests.harness.prereq import need
from tests.integration.networkdriver import agent_harness, helpers
from tests.integration.networkdriver.conftest import Net

pytestmark = pytest.mark.integration


@pytest.fixture()
def sock(tmp_path: Path) -> Path:
    return agent_harness.socket_in(tmp_path)


@pytest.fixture()
def served(net: Net, sock: Path) -> Iterator[agent_harness.ThreadAgent]:
    agent_harness.install_with_agent(net.bin_dirs[0], sock)
    a = agent_harness.ThreadAgent(sock)
    try:
        yield a
    finally:
        a.close()


def test_add_check_del_through_the_agent(net: Net, served: agent_harness.ThreadAgent) -> None:
    ns = net.new_netns()
    conf = net.conf(ipMasq=False)
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="agent-1")
    assert code == 0 and result is not None, result
    addr = ipaddress.ip_interface(result["ips"][0]["address"])
    assert addr in ipaddress.ip_network(net.subnet4) or addr.version == 6
    assert helpers.links(ns)["eth0"]["up"]
    code, out = net.run("kpy-bridge", "CHECK", {**conf, "prevResult": result}, netns=ns,
                        cid="agent-1")
    assert code == 0, out
    code, out = net.run("kpy-bridge", "DEL", {**conf, "prevResult": result}, netns=ns,
                        cid="agent-1")
    assert code == 0, out
    # DEL returned with the address released and the pod cut off the bridge
    assert helpers.ip_files(net.data_dir, net.name) == {}
    assert helpers.forwarding_ports(net.bridge) == []
    assert served.agent.reaper.wait(timeout=30)
    assert "eth0" not in helpers.links(ns) and helpers.bridge_ports(net.bridge) == []
    assert served.agent.served == 3  # the IPAM ran in-process in the agent, as in the engine


def test_a_missing_netns_is_the_plugins_own_error(net: Net,
                                                  served: agent_harness.ThreadAgent) -> None:
    code, out = net.run("kpy-bridge", "ADD", net.conf(), netns="/run/netns/kpyt-none",
                        cid="agent-2")
    assert code == 1 and out is not None and out["code"] == 3, out
    code, out = net.run("kpy-bridge", "DEL", net.conf(), netns="/run/netns/kpyt-none",
                        cid="agent-2")
    assert code == 0, out
    assert served.agent.served == 2


def _version(plugin: Path, *wrap: str, user: int | None = None) -> tuple[int, str]:
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": "VERSION", "KPY_CNI_DEBUG": "1"}
    proc = subprocess.run([*wrap, str(plugin)], env=env, capture_output=True, text=True,
                          timeout=60, check=False, user=user, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["supportedVersions"]
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(("wrap", "reason"), [
    (("unshare", "--mount"), "another mnt namespace"),
    (("unshare", "--net"), "another net namespace")])
def test_another_namespace_runs_the_plugin_itself(net: Net, served: agent_harness.ThreadAgent,
                                                  wrap: tuple[str, ...], reason: str) -> None:
    _, err = _version(net.bin_dirs[0] / "kpy-bridge", *wrap)
    assert f"agent answered F: peer in {reason}" in err
    assert served.agent.served == 0


RAW_CLIENT = """import sys, _socket
sys.path[:0] = [sys.argv[1]]
from engine.networkdriver.plugins import shim
s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
s.connect(sys.argv[2])
s.sendall(shim.frame(b"engine.networkdriver.plugins.bridge", sys.argv[1].encode(), b"", b""))
sys.stdout.buffer.write(b"".join(iter(lambda: s.recv(4096), b"")))
"""


def test_another_uid_runs_the_plugin_itself() -> None:
    # a directory uid 65534 can reach (pytest's tmp dirs are 0700 all the way up)
    # and an interpreter it may run (the venv's may live in root's home)
    python = next((p for p in install.candidates()
                   if not os.path.realpath(p).startswith("/root/")), None)
    need(python is not None, "a python3.11 outside /root", "apt-get install python3.11")
    assert python is not None
    root = Path(f"/run/kubelet-py-test-{helpers.suffix()}")
    root.mkdir(mode=0o711)
    try:
        sock = agent_harness.socket_in(root)
        [plugin, *_] = agent_harness.install_with_agent(root / "bin", sock, python=python)
        (root / "bin").chmod(0o755)
        a = agent_harness.ThreadAgent(sock)
        try:
            sock.parent.chmod(0o711)  # let uid 65534 reach the socket at all
            sock.chmod(0o666)
            # the shim refuses an agent of another uid; the agent, a peer of another uid
            _, err = _version(plugin, user=65534)
            raw = subprocess.run([python, "-IS", "-c", RAW_CLIENT, str(install.SOURCE_ROOT),
                                  str(sock)], user=65534, capture_output=True, timeout=60,
                                 check=True).stdout
        finally:
            a.close()
        assert f"agent at {sock} runs as another user" in err
        assert raw[:1] == b"F" and b"peer uid 65534 is not the agent's uid 0" in raw
        assert a.agent.served == 0
    finally:
        shutil.rmtree(root)


def test_concurrent_adds_then_dels_through_the_agent(net: Net,
                                                     served: agent_harness.ThreadAgent) -> None:
    pods = 50
    netns = [net.new_netns() for _ in range(pods)]
    conf = net.conf(ipMasq=False, dual=False)

    def add(i: int) -> dict[str, Any]:
        code, result = net.run("kpy-bridge", "ADD", conf, netns=netns[i], cid=f"conc-{i}")
        assert code == 0 and result is not None, result
        return result

    def delete(item: tuple[int, dict[str, Any]]) -> None:
        i, result = item
        code, out = net.run("kpy-bridge", "DEL", {**conf, "prevResult": result},
                            netns=netns[i], cid=f"conc-{i}")
        assert code == 0, out

    with concurrent.futures.ThreadPoolExecutor(pods) as pool:
        results = list(pool.map(add, range(pods)))
        addrs = [r["ips"][0]["address"] for r in results]
        assert len(set(addrs)) == pods
        assert len(helpers.ip_files(net.data_dir, net.name)) == pods
        list(pool.map(delete, enumerate(results)))
    assert helpers.ip_files(net.data_dir, net.name) == {}
    assert helpers.forwarding_ports(net.bridge) == []
    assert served.agent.reaper.wait(timeout=60)
    assert helpers.bridge_ports(net.bridge) == []
    assert served.agent.served == 2 * pods
