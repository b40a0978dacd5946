"""containerd (the peer runtime) running pods with our CNI plugins as its network config.

The pinned containerd, Debian's runc, a private root/state/socket, its CRI plugin's CNI
conf_dir/bin_dirs pointed at our shipped conflist (subnet, bridge and data dir made unique)
and our plugins' wrappers (ours also answer as `loopback`, which containerd runs for `lo`),
images from the local registry only. crictl runs the pods. The wrappers are installed as
`make cni-plugins` installs them: thin shims of the CNI agent, which the first of them
starts (a private socket here; the agent is killed at the end).
"""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.networkdriver.plugins import agent, install
from tests.harness import containerd as harness
from tests.harness.cluster_api import wait_for
from tests.harness.prereq import need_binary, need_root, need_tool
from tests.harness.registry import LocalRegistry
from tests.integration.networkdriver import agent_harness, helpers

pytestmark = pytest.mark.e2e

BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
CONFLIST = Path(__file__).resolve().parents[2] / "manifests/cni/10-kubelet-py.conflist"


@dataclass(frozen=True)
class Node:
    instance: harness.Containerd
    tools: Path
    network: str
    subnet: ipaddress.IPv4Network
    data_dir: Path
    workdir: Path
    agent_socket: Path

    def crictl(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run([str(self.tools / "crictl"), "--runtime-endpoint",
                               self.instance.endpoint, "--image-endpoint",
                               self.instance.endpoint, "--timeout", "60s", *args],
                              capture_output=True, text=True, timeout=120, check=False)
        if check:
            log = self.instance.log.read_text(errors="replace")[-3000:]
            assert proc.returncode == 0, (f"crictl {' '.join(args)}: {proc.stderr}\n"
                                          f"containerd log tail:\n{log}")
        return proc.stdout.strip()

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def ip_files(self) -> dict[str, bytes]:
        return helpers.ip_files(self.data_dir, self.network)


def conflist(*, network: str, bridge: str, subnet: str, data_dir: Path) -> dict[str, Any]:
    """The shipped default conflist, made private: a range in place of the node's pod CIDR
    (crictl has no UpdateRuntimeConfig), our bridge and data dir."""
    conf: dict[str, Any] = json.loads(CONFLIST.read_text())
    conf["name"] = network
    main = conf["plugins"][0]
    assert main["type"] == "kpy-bridge"
    main["bridge"] = bridge
    main["ipam"]["dataDir"] = str(data_dir)
    main["ipam"]["ranges"] = [[{"subnet": subnet}]]
    return conf


def install_plugins(bin_dir: Path, sock: Path) -> None:
    install.install(bin_dir, agent_socket=str(sock), autostart=True)
    # containerd brings `lo` up with a plugin of type `loopback`: ours answers to that name
    (bin_dir / "loopback").write_text(install.wrapper(
        install.PLUGINS["kpy-loopback"], agent_socket=str(sock), autostart=True))
    (bin_dir / "loopback").chmod(0o755)
    os.symlink(need_tool("portmap"), bin_dir / "portmap")


@pytest.fixture(scope="module")
def node(local_registry: LocalRegistry,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    need_root()
    need_binary("iptables-restore", "apt-get install iptables")
    runc = need_binary("runc", "apt-get install runc")
    tools = need_tool("containerd").parent
    need_tool("containerd-shim-runc-v2")
    need_tool("crictl")
    root = tmp_path_factory.mktemp("containerd-kpy")
    s = helpers.suffix()
    network, bridge = f"kpyctrd-{s}", f"kpyc{s}"
    subnet = next(helpers.iter_subnets())[0]
    bin_dir, conf_dir, data_dir = root / "cni-bin", root / "net.d", root / "ipam"
    sock = agent_harness.socket_in(root)
    install_plugins(bin_dir, sock)
    conf_dir.mkdir()
    (conf_dir / "10-kubelet-py.conflist").write_text(json.dumps(
        conflist(network=network, bridge=bridge, subnet=subnet, data_dir=data_dir), indent=2))
    socket = Path(f"/run/kubelet-py-test-{secrets.token_hex(4)}/containerd.sock")
    socket.parent.mkdir(parents=True)
    config = root / "config.toml"
    config.write_text(harness.config_toml(root=root, socket=socket, cni_bin=bin_dir,
                                          cni_conf=conf_dir, certs=local_registry.root / "certs.d",
                                          runc=runc))
    log = root / "containerd.log"
    instance = harness.Containerd(endpoint=f"unix://{socket}", root=root, bridge=bridge,
                                  subnet=subnet, log=log)
    env = {**os.environ, "PATH": f"{tools}:{os.environ.get('PATH', '')}"}
    with log.open("wb") as log_file:
        proc = subprocess.Popen([str(tools / "containerd"), "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=log_file, env=env)
    try:
        harness.wait_ready(instance, proc, tools=tools)
        yield Node(instance=instance, tools=tools, network=network,
                   subnet=ipaddress.ip_network(subnet), data_dir=data_dir, workdir=root,
                   agent_socket=sock)
    finally:
        harness.stop(instance, proc, tools=tools)
        agent_harness.kill_autostarted(sock)
        helpers.cleanup_network(network, [bridge])


def pod_config(node: Node, name: str) -> Path:
    uid = f"uid-{name}-{helpers.suffix()}"
    path = node.workdir / f"{name}-{uid}.json"
    path.write_text(json.dumps({
        "metadata": {"name": name, "namespace": "kpy-cni", "uid": uid},
        "log_directory": str(node.workdir / "logs" / uid), "linux": {}}))
    return path


def container_config(node: Node, name: str) -> Path:
    path = node.workdir / f"ctr-{name}.json"
    path.write_text(json.dumps({
        "metadata": {"name": name}, "image": {"image": BUSYBOX},
        "command": ["sleep", "3600"], "log_path": f"{name}.log", "linux": {}}))
    return path


def pod_ip(node: Node, pod: str) -> str:
    status = json.loads(node.crictl("inspectp", pod))["status"]
    return str(status["network"]["ip"])


def test_containerd_runs_pods_on_our_plugins(node: Node) -> None:
    node.crictl("pull", BUSYBOX)
    client = pod_config(node, "client")
    pod = node.crictl("runp", str(client))
    other = node.crictl("runp", str(pod_config(node, "server")))
    ip, other_ip = pod_ip(node, pod), pod_ip(node, other)

    # addresses from our IPAM: in the range, one file per IP naming the sandbox
    files = node.ip_files()
    for sandbox, address in ((pod, ip), (other, other_ip)):
        assert ipaddress.ip_address(address) in node.subnet
        assert address != node.gateway
        assert files[address].split(b"\r\n")[0].decode() == sandbox
    assert len(helpers.bridge_ports(node.instance.bridge)) == 2
    assert helpers.masq_chains(node.network)  # the shipped conflist masquerades (ipMasq)

    ctr = node.crictl("create", pod, str(container_config(node, "main")), str(client))
    node.crictl("start", ctr)
    # pod -> node (the bridge is the gateway), pod -> pod over the bridge, node -> pod
    for target in (node.gateway, other_ip):
        out = node.crictl("exec", "-s", ctr, "ping", "-c", "1", "-W", "5", target,
                          check=False)
        assert "1 packets received" in out, f"ping {target} from the pod: {out}"
    assert helpers.ping(None, ip), f"node cannot reach the pod at {ip}"
    routes = node.crictl("exec", "-s", ctr, "ip", "route")
    assert f"default via {node.gateway}" in routes
    # containerd's own `loopback` network ran our kpy-loopback (installed under that name)
    assert "UP" in node.crictl("exec", "-s", ctr, "ip", "link", "show", "lo")

    # stopp/rmp: containerd's CNI DEL through our plugins releases the addresses
    node.crictl("stop", ctr)
    node.crictl("rm", ctr)
    for sandbox in (pod, other):
        node.crictl("stopp", sandbox)
        node.crictl("rmp", sandbox)
    assert node.ip_files() == {}
    # cut off when DEL returned; the pairs themselves go with the agent's reaper (or with
    # the netns, which containerd removes after DEL)
    assert helpers.forwarding_ports(node.instance.bridge) == []
    assert helpers.masq_chains(node.network) == []
    # the first plugin exec started the agent, which served the later ones (the DELs at
    # least: of our bridge and of the loopback, per pod)
    assert agent.query_status(str(node.agent_socket), settle=True)["served"] >= 4
    wait_for("the deleted pods' veths gone from the bridge",
             lambda: helpers.bridge_ports(node.instance.bridge) == [], timeout=30)
