"""A pod's whole life through crictl against engined with the real engine (host network,
so no CNI is needed): runp, create, start, ps, exec, exec -s, logs, stats, inspect,
events, stop, rm, stopp, rmp."""
from __future__ import annotations

import json
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_crictl_basic import Engined, crictl
from tests.harness.prereq import need_tool
from tests.harness.registry import LocalRegistry

pytestmark = pytest.mark.e2e

BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
NODE, CONTAINER_NS = 2, 1  # NamespaceMode values


@pytest.fixture
def daemon(local_registry: LocalRegistry) -> Iterator[Engined]:
    with tempfile.TemporaryDirectory(prefix="engined-", dir="/tmp") as d:
        engined = Engined(Path(d), "--registry-hosts", str(local_registry.root / "mirrors.yaml"),
                          "--graph-driver", "vfs")
        engined.start()
        try:
            yield engined
        finally:
            for pod in json.loads(crictl(engined, "pods", "-o", "json").stdout or '{"items":[]}'
                                  ).get("items", []):
                crictl(engined, "rmp", "-f", pod["id"])
            engined.stop()


def write_configs(daemon: Engined, command: list[str]) -> tuple[Path, Path]:
    ns = {"network": NODE, "pid": CONTAINER_NS}
    pod = {"metadata": {"name": "web", "namespace": "e2e", "uid": "uid-web"},
           "log_directory": str(daemon.workdir / "logs"),
           "linux": {"security_context": {"namespace_options": ns}}}
    ctr = {"metadata": {"name": "main"}, "image": {"image": BUSYBOX}, "command": command,
           "log_path": "main/0.log", "labels": {"app": "web"},
           "linux": {"security_context": {"namespace_options": ns}}}
    pod_file, ctr_file = daemon.workdir / "pod.json", daemon.workdir / "ctr.json"
    pod_file.write_text(json.dumps(pod))
    ctr_file.write_text(json.dumps(ctr))
    return pod_file, ctr_file


def ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_pod_lifecycle(daemon: Engined) -> None:
    events: list[dict[str, object]] = []
    watcher = subprocess.Popen(
        [str(need_tool("crictl")), "--config", str(daemon.workdir / "crictl.yaml"), "events",
         "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    crictl(daemon, "version")  # writes crictl.yaml before the watcher reads it

    def collect() -> None:
        assert watcher.stdout is not None
        buf = ""
        for line in watcher.stdout:
            buf += line
            if line.startswith("}"):
                events.append(json.loads(buf))
                buf = ""

    threading.Thread(target=collect, daemon=True).start()
    try:
        ok(crictl(daemon, "pull", BUSYBOX))
        pod_file, ctr_file = write_configs(
            daemon, ["/bin/sh", "-c", "echo started; exec sleep 300"])
        pod = ok(crictl(daemon, "runp", str(pod_file)))
        cid = ok(crictl(daemon, "create", pod, str(ctr_file), str(pod_file)))
        ok(crictl(daemon, "start", cid))
        listed = json.loads(ok(crictl(daemon, "ps", "-o", "json", "--label", "app=web")))
        assert [c["id"] for c in listed["containers"]] == [cid]
        assert listed["containers"][0]["state"] == "CONTAINER_RUNNING"
        assert ok(crictl(daemon, "exec", cid, "echo", "via-spdy")) == "via-spdy"
        assert ok(crictl(daemon, "exec", "--transport", "websocket", cid, "echo",
                         "via-ws")) == "via-ws"
        assert ok(crictl(daemon, "exec", "-s", cid, "echo", "sync-out")) == "sync-out"
        sync = crictl(daemon, "exec", "-s", cid, "sh", "-c", "echo out; exit 3")
        assert sync.returncode == 1  # crictl's cri-client turns the exit code into an error
        assert "exited with 3" in sync.stderr
        assert "started" in ok(crictl(daemon, "logs", cid))
        stats = json.loads(ok(crictl(daemon, "stats", "-o", "json", cid)))["stats"][0]
        assert int(stats["cpu"]["usageCoreNanoSeconds"]["value"]) > 0
        inspected = json.loads(ok(crictl(daemon, "inspect", cid)))
        assert inspected["status"]["state"] == "CONTAINER_RUNNING"
        assert inspected["status"]["imageId"].startswith("sha256:")
        assert json.loads(ok(crictl(daemon, "inspectp", pod)))["status"]["state"] == (
            "SANDBOX_READY")
        ok(crictl(daemon, "stop", "-t", "2", cid))
        stopped = json.loads(ok(crictl(daemon, "inspect", cid)))["status"]
        assert stopped["state"] == "CONTAINER_EXITED"
        ok(crictl(daemon, "stop", cid))  # stopping twice succeeds
        ok(crictl(daemon, "rm", cid))
        ok(crictl(daemon, "stopp", pod))
        ok(crictl(daemon, "rmp", pod))
        assert json.loads(ok(crictl(daemon, "pods", "-o", "json")))["items"] == []
    finally:
        watcher.terminate()
        watcher.wait(10)
    kinds = [e["containerEventType"] for e in events if e.get("containerId") == cid]
    assert kinds == ["CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT",
                     "CONTAINER_STOPPED_EVENT", "CONTAINER_DELETED_EVENT"]


def test_a_container_that_exits_on_its_own_is_reported(daemon: Engined) -> None:
    ok(crictl(daemon, "pull", BUSYBOX))
    pod_file, ctr_file = write_configs(daemon, ["/bin/sh", "-c", "exit 7"])
    pod = ok(crictl(daemon, "runp", str(pod_file)))
    cid = ok(crictl(daemon, "create", pod, str(ctr_file), str(pod_file)))
    ok(crictl(daemon, "start", cid))
    for _ in range(100):
        status = json.loads(ok(crictl(daemon, "inspect", cid)))["status"]
        if status["state"] == "CONTAINER_EXITED":
            break
    assert status["state"] == "CONTAINER_EXITED"
    assert status["exitCode"] == 7
    assert status["reason"] == "Error"
    exec_on_exited = crictl(daemon, "exec", "-s", cid, "true")
    assert exec_on_exited.returncode != 0
    assert "FailedPrecondition" in exec_on_exited.stderr
