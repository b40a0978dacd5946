"""Running the enginectl CLI against an `Engined` from the e2e tests."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc

from cri.api import runtime_pb2 as pb
from cri.api import runtime_pb2_grpc
from tests.harness.engined import Engined


def enginectl(daemon: Engined, *args: str, stdin: str | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cri.ctl.main", "--endpoint",
                           daemon.endpoint, *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, check=False)


def ok(daemon: Engined, *args: str, stdin: str | None = None) -> str:
    out = enginectl(daemon, *args, stdin=stdin)
    assert out.returncode == 0, f"enginectl {' '.join(args)}: {out.stderr}\n" \
        f"{daemon.log.read_text()[-3000:]}"
    return out.stdout


def remove_all(daemon: Engined) -> None:
    """Stop and remove every container and pod, and the pod log directories (teardown:
    an engined's containers outlive it, so a failed test must not leave them behind)."""
    channel = grpc.insecure_channel(daemon.endpoint)
    runtime = runtime_pb2_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
    log_dirs: set[Path] = set()
    try:
        for c in runtime.ListContainers(pb.ListContainersRequest(), timeout=30).containers:
            status = runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=c.id),
                                             timeout=30).status
            if status.log_path.startswith("/var/log/pods/"):
                log_dirs.add(Path(status.log_path).parent.parent)
            runtime.StopContainer(pb.StopContainerRequest(container_id=c.id), timeout=30)
            runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=c.id), timeout=30)
        for s in runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items:
            runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=s.id), timeout=30)
            runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=s.id),
                                     timeout=30)
    finally:
        channel.close()
        for d in log_dirs:
            shutil.rmtree(d, ignore_errors=True)
