"""A sandbox networked by the CNI network driver with the reference bridge/host-local plugins."""
from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.networkdriver.cni import CNIDriver
from engine.runtime.api import Runtime
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs
from engine.runtime.status import SandboxStatus
from tests.harness.prereq import need_tool
from tests.integration.runtime.fixtures import log_text, rootfs, runtime_env, sandbox_config

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
__all__ = ["rootfs", "runtime_env"]


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[CNIDriver, str]]:
    bridge = need_tool("bridge")
    need_tool("host-local")
    suffix = secrets.token_hex(3)
    octet = secrets.randbelow(200) + 20
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-test.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": f"kpyrt-{suffix}",
        "plugins": [{"type": "bridge", "bridge": f"kpyrt{suffix}", "isGateway": True,
                     "ipMasq": False,
                     "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                              "ranges": [[{"subnet": f"10.231.{octet}.0/24"}]]}}]}))
    driver = CNIDriver(conf_dir=conf_dir, bin_dirs=[bridge.parent], cache_dir=tmp_path / "cache")
    yield driver, f"10.231.{octet}."
    subprocess.run(["ip", "link", "del", f"kpyrt{suffix}"], capture_output=True, check=False)


def test_pod_gets_an_address_and_serves_on_it(
        runtime_env: tuple[object, list[Runtime]], rootfs: Path,
        network: tuple[CNIDriver, str]) -> None:
    driver, prefix = network
    rt = Runtime(runtime_env[0], network=driver)  # type: ignore[arg-type]
    sid = rt.run_sandbox(sandbox_config("native"))
    info = rt.sandbox_status(sid)
    assert info.status is SandboxStatus.READY
    (ip,) = info.record.ips
    assert ip.startswith(prefix)
    config = ContainerConfig(name="srv", command=("/bin/sh", "-c",
                                                  "grep testpod /etc/hosts; nc -l -p 8080"))
    cid = rt.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                              image=ImageConfig())
    rt.start_container(cid)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection((ip, 8080), timeout=2) as conn:
                conn.sendall(b"over-the-bridge\n")
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    rt.wait_container(cid, timeout=60)
    assert log_text(rt, cid).splitlines() == [f"{ip}\ttestpod", "over-the-bridge"]
    rt.remove_sandbox(sid)  # CNI DEL runs; the address goes back to the pool
    sid2 = rt.run_sandbox(sandbox_config("native"))
    assert rt.sandbox_status(sid2).record.ips[0].startswith(prefix)
    rt.remove_sandbox(sid2)
