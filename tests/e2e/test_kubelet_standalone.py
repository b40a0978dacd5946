"""Standalone mode: no API server, static pods from --pod-manifest-path on a private
containerd; edits replace the pod, a removed manifest removes it."""
from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_kubelet_join import Kubelet, wait
from tests.harness import containerd as ctd
from tests.harness.prereq import need_tool
from tests.harness.registry import LocalRegistry, local_registry  # noqa: F401

pytestmark = pytest.mark.e2e
BUSYBOX = "docker.io/library/busybox:1.36"


def manifest(command: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo"},
            "spec": {"terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "solo", "image": BUSYBOX,
                                     "command": ["sh", "-c", command]}]}}


@pytest.fixture
def runtime(local_registry: LocalRegistry,  # noqa: F811
            tmp_path: Path) -> Iterator[tuple[str, Path]]:
    tools = need_tool("containerd").parent
    need_tool("crictl")
    instance, proc = ctd.start(tmp_path / "containerd", local_registry, tools=tools)
    try:
        yield instance.endpoint, tools
    finally:
        ctd.stop(instance, proc, tools=tools)


def running(tools: Path, endpoint: str) -> list[dict[str, Any]]:
    out = subprocess.run([str(tools / "crictl"), "--runtime-endpoint", endpoint, "ps", "-o",
                          "json"], capture_output=True, text=True, check=True).stdout
    return list(json.loads(out).get("containers") or [])


def test_static_pods_without_api_server(runtime: tuple[str, Path], tmp_path: Path) -> None:
    endpoint, tools = runtime
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "solo.yaml").write_text(json.dumps(manifest("echo first; sleep 3600")))
    kubelet = Kubelet(tmp_path, "solo", [
        "--pod-manifest-path", str(manifests), "--root-dir", str(tmp_path / "root"),
        "--hostname-override", "standalone", "--pod-logs-dir", str(tmp_path / "logs"),
        "--healthz-port", "0", "--pod-cidr", "10.250.0.0/24",
        "--container-runtime-endpoint", endpoint])
    try:
        started = time.monotonic()
        first = wait(lambda: running(tools, endpoint), "static container running", timeout=60)
        print(f"\nstatic pod running {time.monotonic() - started:.2f}s after start")
        labels = first[0]["labels"]
        assert labels["io.kubernetes.pod.name"] == "solo-standalone"
        assert labels["io.kubernetes.pod.namespace"] == "default"
        log = wait(lambda: next((tmp_path / "logs").glob("default_solo-standalone_*/solo/0.log"),
                                None), "log file", timeout=60)
        wait(lambda: "first" in log.read_text(), "first line", timeout=60)
        # An edit is a new pod (new UID): the old one goes, the new one runs.
        (manifests / "solo.yaml").write_text(json.dumps(manifest("echo second; sleep 3600")))
        old_uid = labels["io.kubernetes.pod.uid"]
        wait(lambda: (uids := {c["labels"]["io.kubernetes.pod.uid"]
                               for c in running(tools, endpoint)}) and old_uid not in uids,
             "replaced pod", timeout=60)
        (manifests / "solo.yaml").unlink()
        wait(lambda: not running(tools, endpoint), "pod removed", timeout=60)
        assert kubelet.proc.poll() is None
    finally:
        kubelet.stop()
        print(kubelet.output()[-2000:])
