"""`make engine` / `make engine-down` as issue #5 asks: engined in the background on a
private socket (mode 0660), the endpoint printed last, both targets idempotent."""
from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.harness.prereq import REPO, need_tool

pytestmark = pytest.mark.e2e


def _make(target: str, engine_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", target, f"ENGINE_DIR={engine_dir}"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_make_engine_then_engine_down() -> None:
    crictl = need_tool("crictl")
    with tempfile.TemporaryDirectory(prefix="mkeng-", dir="/tmp") as d:
        engine_dir = Path(d)
        sock = engine_dir / "engine.sock"
        up = _make("engine", engine_dir)
        pid = int((engine_dir / "engined.pid").read_text()) if up.returncode == 0 else 0
        try:
            assert up.returncode == 0, up.stderr
            assert up.stdout.splitlines()[-1] == f"CONTAINER_RUNTIME_ENDPOINT=unix://{sock}"
            assert stat.S_IMODE(sock.stat().st_mode) == 0o660
            version = subprocess.run([str(crictl), "--runtime-endpoint", f"unix://{sock}",
                                      "version"], capture_output=True, text=True, timeout=30,
                                     check=False)
            assert version.returncode == 0 and "kubelet-py" in version.stdout, version.stderr
            again = _make("engine", engine_dir)  # idempotent: the same daemon
            assert again.returncode == 0 and f"already running (pid {pid})" in again.stdout
        finally:
            down = _make("engine-down", engine_dir)
        assert down.returncode == 0 and "engined stopped" in down.stdout, down.stderr
        assert not _alive(pid)
        assert not sock.exists() and not (engine_dir / "engined.pid").exists()
        assert _make("engine-down", engine_dir).returncode == 0  # idempotent too
