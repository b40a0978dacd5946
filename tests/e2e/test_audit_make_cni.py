"""`make cni-config` (what `make run` calls): our plugin executables and the default
conflist land where the engine looks by default, the plugins answer as CNI executables, and
`make cni-uninstall` takes them away again. Here into private directories."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from engine.networkdriver import cniconf
from tests.harness.prereq import REPO, need_tool

pytestmark = pytest.mark.e2e

PLUGINS = ("kpy-bridge", "kpy-host-local", "kpy-loopback")


def _make(target: str, bin_dir: Path, conf_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", target, f"CNI_BIN_DIR={bin_dir}",
                           f"CNI_CONF_DIR={conf_dir}"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


def test_make_cni_config_installs_working_plugins_and_the_default_conflist(
        tmp_path: Path) -> None:
    portmap = need_tool("portmap")
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    installed = _make("cni-config", bin_dir, conf_dir)
    assert installed.returncode == 0, installed.stderr
    assert f"CNI_CONF_DIR={conf_dir}" in installed.stdout
    shipped = (REPO / "manifests/cni/10-kubelet-py.conflist").read_bytes()
    conflist = conf_dir / "10-kubelet-py.conflist"
    assert conflist.read_bytes() == shipped
    conf = cniconf.parse(shipped, path=str(conflist))
    for plugin in conf.plugins:  # every type of the default conflist is installed
        assert os.access(bin_dir / plugin["type"], os.X_OK), plugin["type"]
    assert os.path.realpath(bin_dir / "portmap") == os.path.realpath(portmap)
    for name in PLUGINS:
        out = subprocess.run([str(bin_dir / name)], input=b"", capture_output=True,
                             env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"},
                             timeout=30, check=False)
        assert out.returncode == 0, out.stderr
        assert "1.1.0" in json.loads(out.stdout)["supportedVersions"]
    removed = _make("cni-uninstall", bin_dir, conf_dir)
    assert removed.returncode == 0, removed.stderr
    assert not conflist.exists()
    assert not any((bin_dir / name).exists() for name in PLUGINS)
