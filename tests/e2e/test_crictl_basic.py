"""crictl (the pinned upstream build) against a real `engined` on a private socket."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.prereq import need_tool

pytestmark = pytest.mark.e2e


class Engined:
    def __init__(self, workdir: Path, *extra: str) -> None:
        self.workdir = workdir
        self.extra = extra
        self.sock = workdir / "engine.sock"
        self.endpoint = f"unix://{self.sock}"
        self.log = workdir / "engined.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "cri.daemon", "--listen", self.endpoint,
                "--root", str(self.workdir / "root"), "--run-root", str(self.workdir / "run"),
                "--log-level", "debug", "--shutdown-grace", "1", *self.extra]

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"engined did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture
def engined() -> Iterator[Engined]:
    with tempfile.TemporaryDirectory(prefix="engined-", dir="/tmp") as d:
        daemon = Engined(Path(d))
        daemon.start()
        try:
            yield daemon
        finally:
            daemon.stop()


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
