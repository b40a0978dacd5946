from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.networkdriver.plugins import install
from tests.harness.prereq import need_binary, need_root
from tests.integration.networkdriver import helpers


@dataclasses.dataclass
class Net:
    """One test network: unique names, subnets, a data dir, the netns made for it."""

    name: str
    bridge: str
    subnet4: str
    subnet6: str
    data_dir: Path
    bin_dirs: list[Path]
    netns: list[str] = dataclasses.field(default_factory=list)
    bridges: list[str] = dataclasses.field(default_factory=list)

    def gw4(self) -> str:
        return self.subnet4.rsplit(".", 1)[0] + ".1"

    def new_netns(self) -> str:
        name = f"kpyt-{helpers.suffix()}"
        self.netns.append(name)
        return helpers.add_netns(name)

    def conf(self, *, kind: str = "kpy-bridge", ipam: str = "kpy-host-local",
             version: str = "1.1.0", dual: bool = True, **extra: Any) -> dict[str, Any]:
        ranges = [[{"subnet": self.subnet4}]]
        if dual:
            ranges.append([{"subnet": self.subnet6}])
        conf: dict[str, Any] = {
            "cniVersion": version, "name": self.name, "type": kind, "bridge": self.bridge,
            "isDefaultGateway": True, "ipMasq": True, "hairpinMode": True, "mtu": 1400,
            "ipam": {"type": ipam, "dataDir": str(self.data_dir), "ranges": ranges}}
        conf.update(extra)
        return conf

    def run(self, kind: str, command: str, conf: dict[str, Any] | bytes, *, netns: str,
            cid: str, ifname: str = "eth0", **kw: Any) -> tuple[int, dict[str, Any] | None]:
        return helpers.run_plugin(self.bin_dirs, kind, command, conf, netns=netns, cid=cid,
                                  ifname=ifname, **kw)


@pytest.fixture()
def kpy_bin(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    install.install(d)
    return d


@pytest.fixture()
def net(tmp_path: Path, kpy_bin: Path) -> Iterator[Net]:
    need_root()
    need_binary("busybox", "apt-get install busybox-static")
    need_binary("iptables-restore", "apt-get install iptables")
    s = helpers.suffix()
    subnet4, subnet6 = next(helpers.iter_subnets())
    n = Net(name=f"kpyt-{s}", bridge=f"kpyt{s}", subnet4=subnet4, subnet6=subnet6,
            data_dir=tmp_path / "ipam", bin_dirs=[kpy_bin])
    n.bridges.append(n.bridge)
    try:
        yield n
    finally:
        for ns in n.netns:
            helpers.del_netns(ns)
        helpers.cleanup_network(n.name, n.bridges)
        shutil.rmtree(tmp_path / "ipam", ignore_errors=True)
