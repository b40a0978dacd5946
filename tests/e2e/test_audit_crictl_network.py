"""engined with our CNI plugins, driven by crictl: NetworkReady stays false (with the reason)
until a conflist exists and the pod CIDR is known; then a pod sandbox gets its address from
that CIDR through the shipped conflist, the node reaches it, and rmp releases it."""
from __future__ import annotations

import ipaddress
import json
import tempfile
import time
from pathlib import Path

import pytest

from engine.networkdriver.plugins import install
from tests.e2e.test_crictl_basic import crictl
from tests.e2e.test_crictl_pod_lifecycle import ok
from tests.harness.engined import Engined
from tests.harness.prereq import REPO, need_binary, need_root
from tests.integration.networkdriver import helpers

pytestmark = pytest.mark.e2e


def _network_ready(daemon: Engined) -> dict[str, object]:
    info = json.loads(ok(crictl(daemon, "info")))
    (cond,) = [c for c in info["status"]["conditions"] if c["type"] == "NetworkReady"]
    return cond


def test_network_ready_follows_the_config_and_pods_get_addresses(tmp_path: Path) -> None:
    need_root()
    need_binary("busybox", "apt-get install busybox-static")
    bin_dir, net_d = tmp_path / "bin", tmp_path / "net.d"
    install.install(bin_dir)
    net_d.mkdir()
    s = helpers.suffix()
    subnet = next(helpers.iter_subnets())[0]
    conf = json.loads((REPO / "manifests/cni/10-kubelet-py.conflist").read_text())
    conf["name"] = f"kpye-{s}"
    conf["plugins"] = [p for p in conf["plugins"] if p["type"] != "portmap"]
    conf["plugins"][0]["bridge"] = f"kpye{s}"
    conf["plugins"][0]["ipam"]["dataDir"] = str(tmp_path / "ipam")
    with tempfile.TemporaryDirectory(prefix="engined-", dir="/tmp") as d, Engined.create(
            Path(d), graph_driver="vfs",
            extra=("--cni-conf-dir", str(net_d), "--cni-bin-dir", str(bin_dir))) as daemon:
        try:
            cond = _network_ready(daemon)
            assert cond["status"] is False and cond["reason"] == "NetworkPluginNotReady"
            assert cond["message"]
            (net_d / "10-kubelet-py.conflist").write_text(json.dumps(conf))
            cond = _network_ready(daemon)
            assert cond["status"] is False and "pod CIDR" in str(cond["message"])
            ok(crictl(daemon, "update-runtime-config", "--pod-cidr", subnet))
            assert _network_ready(daemon)["status"] is True
            pod_file = tmp_path / "pod.json"
            pod_file.write_text(json.dumps({
                "metadata": {"name": "net", "namespace": "e2e", "uid": f"uid-{s}"},
                "log_directory": str(tmp_path / "logs")}))
            pod = ok(crictl(daemon, "runp", str(pod_file)))
            status = json.loads(ok(crictl(daemon, "inspectp", pod)))["status"]
            ip = status["network"]["ip"]
            assert ipaddress.ip_address(ip) in ipaddress.ip_network(subnet)
            assert ip != str(ipaddress.ip_network(subnet).network_address + 1)  # the gateway
            assert helpers.ping(None, ip)  # node -> pod over our bridge
            assert list(helpers.ip_files(tmp_path / "ipam", conf["name"])) == [ip]
            ok(crictl(daemon, "stopp", pod))
            ok(crictl(daemon, "rmp", pod))
            deadline = time.monotonic() + 60
            while helpers.ip_files(tmp_path / "ipam", conf["name"]):
                assert time.monotonic() < deadline, "the pod's address was not released"
                time.sleep(0.1)
        finally:
            helpers.cleanup_network(conf["name"], [conf["plugins"][0]["bridge"]])
