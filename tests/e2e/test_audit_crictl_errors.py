"""The precise error codes of issue #5 as crictl shows them, against engined with the real
engine: ALREADY_EXISTS, DEADLINE_EXCEEDED, NOT_FOUND, INVALID_ARGUMENT, and the idempotence
critest expects of stop/remove on what does not exist; PullImage with auth, the single-ID
stats RPCs and `crictl attach` on the real engine."""
from __future__ import annotations

import json
import os
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cri.api import runtime_pb2 as pb
from cri.api import runtime_pb2_grpc
from tests.e2e.test_crictl_basic import crictl
from tests.e2e.test_crictl_pod_lifecycle import BUSYBOX, ok, tty_shell, write_configs
from tests.harness.engined import Engined, private_engined
from tests.harness.grpc_codes import status_counts
from tests.harness.prereq import need_tool
from tests.harness.registry import LocalRegistry

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def daemon(local_registry: LocalRegistry) -> Iterator[Engined]:
    """One engined for the module's tests (each uses its own pod)."""
    with private_engined(registry_hosts=local_registry.root / "mirrors.yaml",
                         graph_driver="vfs") as engined:
        yield engined

ABSENT = "0" * 64


def test_error_codes_and_idempotence_through_crictl(daemon: Engined) -> None:
    ok(crictl(daemon, "pull", BUSYBOX))
    pod_file, ctr_file = write_configs(daemon, ["/bin/sh", "-c", "exec sleep 300"])
    pod = ok(crictl(daemon, "runp", str(pod_file)))
    cid = ok(crictl(daemon, "create", pod, str(ctr_file), str(pod_file)))
    # the same container name and attempt in the same pod: the name is taken
    again = crictl(daemon, "create", pod, str(ctr_file), str(pod_file))
    assert again.returncode != 0 and "AlreadyExists" in again.stderr, again.stderr
    ok(crictl(daemon, "start", cid))
    # verbose status: crictl inspect/inspectp ask for the runtime's info
    info = json.loads(ok(crictl(daemon, "inspect", cid)))["info"]
    assert info["sandboxID"] == pod and info["pid"] > 1
    podinfo = json.loads(ok(crictl(daemon, "inspectp", pod)))["info"]
    assert podinfo["monitorAlive"] is True and podinfo["cgroupPath"]
    slow = crictl(daemon, "exec", "-s", "--timeout", "1", cid, "sleep", "30")
    assert slow.returncode != 0 and "DeadlineExceeded" in slow.stderr, slow.stderr
    assert ok(crictl(daemon, "exec", "-s", cid, "echo", "alive")) == "alive"
    missing = crictl(daemon, "inspect", ABSENT)
    assert missing.returncode != 0 and "NotFound" in missing.stderr, missing.stderr
    bad = json.loads(ctr_file.read_text())
    bad["log_path"] = "../../escape.log"
    bad["metadata"]["name"] = "other"
    ctr_file.write_text(json.dumps(bad))
    refused = crictl(daemon, "create", pod, str(ctr_file), str(pod_file))
    assert refused.returncode != 0 and "InvalidArgument" in refused.stderr, refused.stderr
    assert "may not contain '..'" in refused.stderr
    with grpc.insecure_channel(daemon.endpoint) as channel:
        rt = runtime_pb2_grpc.RuntimeServiceStub(channel)
        # the single-ID stats RPCs (crictl's stats/statsp list with a filter instead)
        stats = rt.ContainerStats(pb.ContainerStatsRequest(container_id=cid)).stats
        assert stats.attributes.id == cid and stats.memory.working_set_bytes.value > 0
        podstats = rt.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=pod)).stats
        assert podstats.attributes.id == pod
        assert [c.attributes.id for c in podstats.linux.containers] == [cid]
        with pytest.raises(grpc.RpcError) as info:
            rt.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=ABSENT))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        # stop and remove of what does not exist succeed (critest's idempotence); crictl
        # asks for a status first, so these go straight to the RPCs
        rt.StopContainer(pb.StopContainerRequest(container_id=ABSENT, timeout=1))
        rt.RemoveContainer(pb.RemoveContainerRequest(container_id=ABSENT))
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=ABSENT))
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=ABSENT))
        ok(crictl(daemon, "stop", cid))
        ok(crictl(daemon, "rm", cid))
        rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=1))  # removed
        rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))  # twice
        ok(crictl(daemon, "stopp", pod))
        ok(crictl(daemon, "rmp", pod))
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod))
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
    assert json.loads(ok(crictl(daemon, "ps", "-a", "-o", "json")))["containers"] == []


def test_pull_image_with_auth_through_crictl(local_registry: LocalRegistry,
                                             tmp_path: Path) -> None:
    """CRI PullImage's AuthConfig reaches the registry: refused without or with wrong
    credentials, pulled with the right ones."""
    hosts_file = local_registry.hosts_with_tls(tmp_path)
    ref = f"{local_registry.tls_host}/kubelet-py/busybox:latest"
    with private_engined(registry_hosts=hosts_file, graph_driver="vfs") as daemon:
        denied = crictl(daemon, "pull", ref)
        assert denied.returncode != 0, denied.stdout
        assert "Unauthenticated" in denied.stderr and "no credentials" in denied.stderr
        wrong = crictl(daemon, "pull", "--creds", f"{local_registry.username}:nope", ref)
        assert wrong.returncode != 0, wrong.stdout
        assert "Unauthenticated" in wrong.stderr and "credentials refused" in wrong.stderr
        assert json.loads(ok(crictl(daemon, "images", "-o", "json")))["images"] == []
        pulled = ok(crictl(daemon, "pull", "--creds",
                           f"{local_registry.username}:{local_registry.password}", ref))
        image_id = pulled.rsplit(" ", 1)[-1]
        listed = json.loads(ok(crictl(daemon, "images", "-o", "json")))["images"]
        assert [(i["id"], i["repoTags"]) for i in listed] == [(image_id, [ref])]


def test_crictl_attach_to_a_real_container(daemon: Engined) -> None:
    """`crictl attach -i` on the real engine (test_crictl_streaming.py covers the wire on a
    fake runtime): stdin reaches the container's shell, its output comes back."""
    ok(crictl(daemon, "pull", BUSYBOX))
    pod_file, ctr_file = write_configs(daemon, ["/bin/sh"])
    ctr = json.loads(ctr_file.read_text())
    ctr.update(stdin=True, stdin_once=True)
    ctr_file.write_text(json.dumps(ctr))
    pod_conf = json.loads(pod_file.read_text())
    pod_conf["metadata"].update(name="attach", uid="uid-attach")  # apart from the other test
    pod_file.write_text(json.dumps(pod_conf))
    pod = ok(crictl(daemon, "runp", str(pod_file)))
    cid = ok(crictl(daemon, "create", pod, str(ctr_file), str(pod_file)))
    ok(crictl(daemon, "start", cid))
    attached = subprocess.run(
        [str(need_tool("crictl")), "--config", str(daemon.workdir / "crictl.yaml"), "attach",
         "-i", cid], input="echo attached-$((6*7))\nexit 5\n", capture_output=True,
        text=True, timeout=60, check=False)
    assert "attached-42" in attached.stdout, attached.stderr
    status = json.loads(ok(crictl(daemon, "inspect", cid)))["status"]
    deadline = time.monotonic() + 60
    while status["state"] != "CONTAINER_EXITED" and time.monotonic() < deadline:
        time.sleep(0.1)
        status = json.loads(ok(crictl(daemon, "inspect", cid)))["status"]
    assert (status["state"], status["exitCode"]) == ("CONTAINER_EXITED", 5)


def _task_and_fd_counts(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def test_a_thousand_concurrent_requests_on_the_real_engine(daemon: Engined) -> None:
    """test_load.py does this over fakes; here the engine answers, and engined keeps no
    thread or file descriptor of the burst."""
    assert daemon.proc is not None
    with grpc.insecure_channel(daemon.endpoint) as channel:
        rt = runtime_pb2_grpc.RuntimeServiceStub(channel)
        images = runtime_pb2_grpc.ImageServiceStub(channel)
        rt.Version(pb.VersionRequest())  # connected: the channel's socket is counted
        threads, fds = _task_and_fd_counts(daemon.proc.pid)
        futures = [rt.ListContainers.future(pb.ListContainersRequest(), timeout=60)
                   for _ in range(400)]
        futures += [rt.ContainerStatus.future(pb.ContainerStatusRequest(container_id=ABSENT),
                                              timeout=60) for _ in range(300)]
        futures += [images.ListImages.future(pb.ListImagesRequest(), timeout=60)
                    for _ in range(300)]
        codes = status_counts(futures)
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        assert codes.get(grpc.StatusCode.NOT_FOUND, 0) > 0 and codes.get(grpc.StatusCode.OK)
        after_threads, after_fds = _task_and_fd_counts(daemon.proc.pid)
        assert after_fds <= fds  # nothing opened per request stays open
        assert after_threads <= threads + 32  # at most the RPC pool's workers
        assert rt.Version(pb.VersionRequest()).runtime_name == "kubelet-py"


def test_exec_with_a_real_tty_over_websocket(daemon: Engined) -> None:
    """`crictl exec -it --transport websocket` (kubectl's transport since v1.31) on the real
    engine: a terminal, its size sent over the resize channel, the exit code back."""
    ok(crictl(daemon, "pull", BUSYBOX))
    pod_file, ctr_file = write_configs(daemon, ["/bin/sh", "-c", "exec sleep 300"])
    pod_conf = json.loads(pod_file.read_text())
    pod_conf["metadata"].update(name="tty", uid="uid-tty")
    pod_file.write_text(json.dumps(pod_conf))
    pod = ok(crictl(daemon, "runp", str(pod_file)))
    cid = ok(crictl(daemon, "create", pod, str(ctr_file), str(pod_file)))
    ok(crictl(daemon, "start", cid))
    with tty_shell(daemon, cid, rows=27, cols=93, transport="websocket") as (
            proc, master, shown):
        seen = shown
        os.write(master, b"exit 3\n")
        assert proc.wait(20) == 1  # crictl's answer to any non-zero exit of the command
        while select.select([master], [], [], 1)[0]:
            try:
                seen += os.read(master, 4096)
            except OSError:  # EIO: crictl, the terminal's last user, is gone
                break
        assert b"command terminated with exit code 3" in seen, seen[-300:]
