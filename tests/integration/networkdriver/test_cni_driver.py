"""The engine's CNIDriver with the shipped conflist and our plugins on real netns."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import errors
from engine.networkdriver.base import PodNetworkRequest
from engine.networkdriver.cni import CNIDriver
from tests.harness.prereq import REPO
from tests.integration.networkdriver import helpers
from tests.integration.networkdriver.conftest import Net

pytestmark = pytest.mark.integration


def shipped_conflist(net: Net, conf_dir: Path) -> None:
    """manifests/cni/10-kubelet-py.conflist with this test's bridge, data dir and no portmap."""
    conf = json.loads((REPO / "manifests/cni/10-kubelet-py.conflist").read_text())
    conf["name"] = net.name
    conf["plugins"] = [p for p in conf["plugins"] if p["type"] != "portmap"]
    conf["plugins"][0]["bridge"] = net.bridge
    conf["plugins"][0]["ipam"]["dataDir"] = str(net.data_dir)
    conf_dir.mkdir()
    (conf_dir / "10-kubelet-py.conflist").write_text(json.dumps(conf))


@pytest.mark.parametrize("in_process", [True, False])
def test_setup_check_teardown(net: Net, tmp_path: Path, in_process: bool) -> None:
    shipped_conflist(net, tmp_path / "net.d")
    driver = CNIDriver(conf_dir=tmp_path / "net.d", bin_dirs=[tmp_path / "nothing", *net.bin_dirs],
                       cache_dir=tmp_path / "cache", in_process=in_process)
    ready, reason = driver.ready()
    assert not ready and "pod CIDR" in reason
    driver.set_pod_cidr(net.subnet4)
    assert driver.ready() == (True, "")
    ns = net.new_netns()
    req = PodNetworkRequest(sandbox_id="sandbox1", netns_path=ns, pod_name="p",
                            pod_namespace="default", pod_uid="u1")
    res = driver.setup(req)
    (ip,) = res.ips
    assert ip == net.subnet4.replace(".0/24", ".2")
    assert res.result["interfaces"][2]["sandbox"] == ns
    assert helpers.links(ns)["lo"]["up"]
    assert helpers.ping(None, ip)
    driver.check(req)
    with pytest.raises(errors.AlreadyExists):  # the same sandbox twice is refused up front
        driver.setup(req)
    driver.check(req)  # ... and the first attachment is intact
    helpers.ns_exec(ns, "ip", "link", "del", "eth0")
    with pytest.raises(errors.EngineError, match="missing from the container"):
        driver.check(req)
    driver.teardown(req)
    assert helpers.ip_files(net.data_dir, net.name) == {}
    helpers.del_netns(ns.rsplit("/", 1)[1])
    driver.teardown(req)  # netns gone, nothing cached: still a success


def test_setup_into_a_missing_netns_is_not_found(net: Net, tmp_path: Path) -> None:
    shipped_conflist(net, tmp_path / "net.d")
    driver = CNIDriver(conf_dir=tmp_path / "net.d", bin_dirs=net.bin_dirs,
                       cache_dir=tmp_path / "cache")
    driver.set_pod_cidr(net.subnet4)
    req = PodNetworkRequest(sandbox_id="s2", netns_path="/run/netns/kpyt-none-here",
                            pod_name="p", pod_namespace="default", pod_uid="u2")
    with pytest.raises(errors.NotFound, match="code 3"):
        driver.setup(req)
    assert helpers.ip_files(net.data_dir, net.name) == {}
