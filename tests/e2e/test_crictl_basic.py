"""crictl (the pinned upstream build) against a real `engined` on a private socket."""
from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator

import pytest

from tests.harness.engined import Engined, private_engined
from tests.harness.prereq import need_tool

pytestmark = pytest.mark.e2e


@pytest.fixture
def engined() -> Iterator[Engined]:
    with private_engined() as daemon:
        yield daemon


def crictl(daemon: Engined, *args: str) -> subprocess.CompletedProcess[str]:
    config = daemon.workdir / "crictl.yaml"
    config.write_text(f"runtime-endpoint: {daemon.endpoint}\nimage-endpoint: "
                      f"{daemon.endpoint}\ntimeout: 10\n")
    return subprocess.run([str(need_tool("crictl")), "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_crictl_version(engined: Engined) -> None:
    out = crictl(engined, "version")
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(":", 1) for line in out.stdout.splitlines() if ":" in line)
    assert fields["RuntimeName"].strip() == "kubelet-py"
    assert fields["RuntimeApiVersion"].strip() == "v1"


def test_crictl_info_reports_conditions_honestly(engined: Engined) -> None:
    out = crictl(engined, "info")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    conditions = {c["type"]: c for c in info["status"]["conditions"]}
    assert set(conditions) == {"RuntimeReady", "NetworkReady"}
    wired = info["wired"]
    if not wired["sandboxes"]:
        assert conditions["RuntimeReady"]["status"] is False
        assert conditions["RuntimeReady"]["reason"]
    if not wired["network"]:
        assert conditions["NetworkReady"]["status"] is False
    assert info["cgroupDriver"] == "CGROUPFS"


def test_crictl_pods_is_unimplemented_exactly_when_unwired(engined: Engined) -> None:
    wired = json.loads(crictl(engined, "info").stdout)["wired"]
    out = crictl(engined, "pods")
    if wired["sandboxes"]:
        assert out.returncode == 0, out.stderr
    else:
        assert out.returncode != 0
        assert "Unimplemented" in out.stderr
        assert "not wired" in out.stderr


def test_socket_mode_refusal_and_clean_sigterm(engined: Engined) -> None:
    assert stat.S_IMODE(os.stat(engined.sock).st_mode) == 0o660
    second = subprocess.run(engined.argv(), capture_output=True, text=True, timeout=60,
                            check=False)
    assert second.returncode == 1
    assert "in use by a live process" in second.stderr
    assert engined.sock.exists()
    assert engined.stop() == 0
    assert not engined.sock.exists()
