"""hostPort: the engine's CNI driver runs the shipped conflist, with the pinned reference
portmap after our bridge, and 127.0.0.1:<hostPort> reaches the pod."""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest

from engine.networkdriver.base import PodNetworkRequest, PortMapping
from engine.networkdriver.cni import CNIDriver
from engine.networkdriver.plugins import install
from tests.harness.prereq import REPO, need_binary, need_tool
from tests.integration.networkdriver import helpers

pytestmark = pytest.mark.e2e


def serve_once(netns: str, port: int, started: list[subprocess.Popen[bytes]]
               ) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["ip", "netns", "exec", os.path.basename(netns), "busybox", "nc",
                             "-l", "-p", str(port)], stdin=subprocess.PIPE)
    started.append(proc)
    assert proc.stdin is not None
    proc.stdin.write(b"hello\n")
    proc.stdin.close()
    deadline = time.monotonic() + 60
    while f":{port:04X}" not in helpers.ns_exec(netns, "cat", "/proc/net/tcp",
                                                 "/proc/net/tcp6").stdout:
        assert time.monotonic() < deadline, "the pod's listener did not come up"
        time.sleep(0.05)
    return proc


def fetch(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=5) as s:
        return s.recv(100)


def test_host_port_through_portmap(tmp_path: Path) -> None:
    need_binary("busybox", "apt-get install busybox-static")
    bin_dir = tmp_path / "bin"
    install.install(bin_dir)
    os.symlink(need_tool("portmap"), bin_dir / "portmap")
    s = helpers.suffix()
    conf = json.loads((REPO / "manifests/cni/10-kubelet-py.conflist").read_text())
    conf["name"] = f"kpye-{s}"
    conf["plugins"][0]["bridge"] = f"kpye{s}"
    conf["plugins"][0]["ipam"]["dataDir"] = str(tmp_path / "ipam")
    (tmp_path / "net.d").mkdir()
    (tmp_path / "net.d" / "10-kubelet-py.conflist").write_text(json.dumps(conf))
    driver = CNIDriver(conf_dir=tmp_path / "net.d", bin_dirs=[bin_dir],
                       cache_dir=tmp_path / "cache")
    driver.set_pod_cidr(next(helpers.iter_subnets())[0])
    netns_name = f"kpye-{s}"
    netns = helpers.add_netns(netns_name)
    host_port = 30000 + secrets.randbelow(9000)
    req = PodNetworkRequest(sandbox_id=f"pm{s}", netns_path=netns, pod_name="web",
                            pod_namespace="default", pod_uid="u",
                            port_mappings=(PortMapping("TCP", 8080, host_port),))
    servers: list[subprocess.Popen[bytes]] = []
    try:
        (pod_ip,) = driver.setup(req).ips
        server = serve_once(netns, 8080, servers)
        assert fetch(pod_ip, 8080) == b"hello\n"
        server.wait(timeout=5)
        server = serve_once(netns, 8080, servers)
        assert fetch("127.0.0.1", host_port) == b"hello\n"
        server.wait(timeout=5)
        driver.teardown(req)
        saved = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True,
                               check=True).stdout
        assert f"dport {host_port}" not in saved and req.sandbox_id not in saved
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        driver.teardown(req)
        helpers.del_netns(netns_name)
        helpers.cleanup_network(conf["name"], [conf["plugins"][0]["bridge"]])
