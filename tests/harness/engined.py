"""A private `engined` for tests and benchmarks: its own socket, root, run root and log.

Every e2e test and benchmark that needs our runtime starts it through `Engined`, so that
starting, waiting for the socket and, above all, cleaning up are written once: pods (and
their monitors) outlive the daemon by design, so `close()` removes every pod through the
CRI before it stops the daemon, then deletes the CNI bridge and any mount left under the
work directory.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from cri.api import runtime_pb2 as pb
from cri.api import runtime_pb2_grpc as pb_grpc


def _accepts(path: Path) -> bool:
    """Something listens on the unix socket at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(10)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@dataclasses.dataclass
class Engined:
    workdir: Path
    extra: tuple[str, ...] = ()
    bridge: str | None = None  # a CNI bridge this instance owns; deleted on close
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, workdir: Path, *, registry_hosts: Path | None = None,
               conflist: Mapping[str, Any] | None = None,
               cni_bin_dirs: Sequence[Path] = (), graph_driver: str | None = None,
               exec_driver: str | None = None, extra: Sequence[str] = ()) -> Engined:
        """An instance configured like the daemon flags say (not started yet)."""
        args: list[str] = []
        if registry_hosts is not None:
            args += ["--registry-hosts", str(registry_hosts)]
        bridge = None
        if conflist is not None:
            net_d = workdir / "net.d"
            net_d.mkdir(parents=True, exist_ok=True)
            (net_d / "10-test.conflist").write_text(json.dumps(conflist))
            args += ["--cni-conf-dir", str(net_d)]
            bridge = next((p.get("bridge") for p in conflist.get("plugins", [])
                           if p.get("type") in ("bridge", "kpy-bridge")), None)
        for d in cni_bin_dirs:
            args += ["--cni-bin-dir", str(d)]
        if graph_driver is not None:
            args += ["--graph-driver", graph_driver]
        if exec_driver is not None:
            args += ["--exec-driver", exec_driver]
        return cls(workdir=workdir, extra=(*args, *extra), bridge=bridge)

    @property
    def sock(self) -> Path:
        return self.workdir / "engine.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.sock}"

    @property
    def log(self) -> Path:
        return self.workdir / "engined.log"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "cri.daemon", "--listen", self.endpoint,
                "--root", str(self.workdir / "root"), "--run-root", str(self.workdir / "run"),
                "--log-level", "debug", "--shutdown-grace", "1", *self.extra]

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        # the socket's file appears at bind(), a moment before it listens: wait until a
        # connection is taken, then until the CRI answers
        while not _accepts(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"engined did not start; the end of {self.log}:\n"
                                   + self.log.read_text()[-3000:])
            time.sleep(0.05)
        with grpc.insecure_channel(self.endpoint) as channel:
            rt = pb_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
            try:
                rt.Version(pb.VersionRequest(), wait_for_ready=True,
                           timeout=max(1.0, deadline - time.monotonic()))
            except grpc.RpcError as exc:
                raise RuntimeError(f"engined does not answer: {exc}; the end of {self.log}:\n"
                                   + self.log.read_text()[-3000:]) from exc

    def remove_all_pods(self, timeout: float = 60.0) -> None:
        """Stop and remove every pod sandbox (its containers, monitor and network)."""
        with grpc.insecure_channel(self.endpoint) as channel:
            rt = pb_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
            pods = rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=timeout).items
            for pod in pods:
                rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.id),
                                  timeout=timeout)
                rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id),
                                    timeout=timeout)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; the daemon's exit code."""
        assert self.proc is not None, "engined was not started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def close(self) -> None:
        """Remove the pods, stop the daemon, delete the bridge and leftover mounts."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    self.remove_all_pods()
                finally:
                    self.stop()
        finally:
            if self.bridge:
                subprocess.run(["ip", "link", "del", self.bridge], capture_output=True,
                               check=False)
            for target in mounts_under(self.workdir):
                subprocess.run(["umount", "-l", target], capture_output=True, check=False)

    def __enter__(self) -> Engined:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def mounts_under(directory: Path) -> list[str]:
    """Mount points below `directory`, deepest first (to unmount in that order)."""
    prefix = str(directory.resolve()) + "/"
    points = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    return sorted(points, key=len, reverse=True)


@contextlib.contextmanager
def private_engined(**settings: Any) -> Iterator[Engined]:
    """A started `Engined.create(<new temp dir>, **settings)`, closed and removed after."""
    with tempfile.TemporaryDirectory(prefix="engined-", dir="/tmp") as d, \
            Engined.create(Path(d), **settings) as daemon:
        yield daemon
