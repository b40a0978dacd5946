"""`make run`, as the README promises it: the static pods of manifests/static/ run on engined
in standalone mode, and `make run-down` leaves nothing running."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.harness.prereq import REPO, need_tool

pytestmark = pytest.mark.e2e


def _crictl(crictl: Path, endpoint: str, *args: str) -> str:
    out = subprocess.run([str(crictl), "--runtime-endpoint", endpoint, "--timeout", "30s",
                          *args], capture_output=True, text=True, check=False)
    return out.stdout


def _ours(run_dir: Path) -> list[str]:
    """Command lines of live processes that belong to this `make run` (by its state dir)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(run_dir) in cmdline and int(pid) != os.getpid():
            found.append(cmdline)
    return found


def _get_until_served(url: str, *, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body: bytes = resp.read()
                return body
        except urllib.error.HTTPError:
            raise  # it answered: no reason to ask again
        except OSError as exc:  # refused until the server listens
            assert time.monotonic() < deadline, f"{url} not served within {timeout:.0f} s: {exc}"
            time.sleep(0.2)


def test_make_run_runs_the_static_pods_and_run_down_stops_everything(tmp_path: Path) -> None:
    crictl = need_tool("crictl")
    run_dir = tmp_path / "run"
    env = dict(os.environ, RUN_DIR=str(run_dir), REGISTRY_DIR=str(tmp_path / "registry"))
    endpoint = f"unix://{run_dir}/engine/engine.sock"
    log = (tmp_path / "make-run.log").open("wb")
    proc = subprocess.Popen(["make", "-s", "run"], cwd=REPO, env=env, stdout=log, stderr=log,
                            start_new_session=True)
    node = socket.gethostname().lower()
    try:
        deadline = time.monotonic() + 240
        running: dict[str, str] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "make-run.log").read_text()[-3000:]
            listed = json.loads(_crictl(crictl, endpoint, "ps", "-o", "json") or "{}")
            running = {c["metadata"]["name"]: c["podSandboxId"]
                       for c in listed.get("containers", []) if c["state"] == "CONTAINER_RUNNING"}
            if {"httpd", "ticker"} <= running.keys():
                break
            time.sleep(1)
        assert {"httpd", "ticker"} <= running.keys(), (tmp_path / "make-run.log").read_text()
        pod = json.loads(_crictl(crictl, endpoint, "inspectp", "-o", "json", running["httpd"]))
        assert pod["status"]["metadata"]["name"] == f"web-{node}"
        ip = pod["status"]["network"]["ip"]
        assert ip.startswith("10.88.0."), ip  # our IPAM, from make run's pod CIDR
        # a running container is not yet a listening httpd: asked until it answers
        assert b"root:" in _get_until_served(f"http://{ip}:8080/passwd")  # it serves /etc
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        down = subprocess.run(["make", "-s", "run-down"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=180, check=False)
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 30
    while _ours(run_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ours(run_dir) == []
