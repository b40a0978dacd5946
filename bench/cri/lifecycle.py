"""A pod's life through the CRI, engined against containerd (runc), side by side.

Each sample: RunPodSandbox (bridge networking through the reference CNI plugins; and, as a
third contender, engined with our own plugins run in-process) +
CreateContainer + StartContainer of a pulled busybox image (`start`), then StopContainer +
RemoveContainer + StopPodSandbox + RemovePodSandbox (`teardown`), as crictl's gRPC calls.
Both runtimes are private instances with their own registry mirror, root and bridge.

    .venv/bin/python -m bench.cri.lifecycle [-n 20] [--no-record]
"""
from __future__ import annotations

import argparse
import functools
import itertools
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from bench.kubelet.runtimes import private_containerd, private_engined
from bench.report import Series, record
from cri.api import runtime_pb2 as pb
from cri.api import runtime_pb2_grpc as pb_grpc
from tests.harness import registry
from tests.harness.prereq import tools_bin

IMAGE = "registry.k8s.io/e2e-test-images/busybox:1.29-2"


STEPS = ("RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer",
         "RemoveContainer", "StopPodSandbox", "RemovePodSandbox")


def one(rt: pb_grpc.RuntimeServiceStub, i: int, *, logs: Path) -> list[float]:
    """Milliseconds of each of STEPS for one pod (its logs in a new directory of `logs`)."""
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=f"life-{i}", namespace="bench",
                                       uid=secrets.token_hex(16)),
        log_directory=str(logs / secrets.token_hex(4)))
    marks = [time.perf_counter()]
    sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=120).pod_sandbox_id
    marks.append(time.perf_counter())
    cid = rt.CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=sid, sandbox_config=config, config=pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image=IMAGE),
            command=["sleep", "3600"], log_path="c.log")), timeout=120).container_id
    marks.append(time.perf_counter())
    rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
    marks.append(time.perf_counter())
    rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0), timeout=120)
    marks.append(time.perf_counter())
    rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=120)
    marks.append(time.perf_counter())
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=120)
    marks.append(time.perf_counter())
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=120)
    marks.append(time.perf_counter())
    return [(b - a) * 1000 for a, b in itertools.pairwise(marks)]


def run(endpoint: str, n: int, *, logs: Path) -> list[list[float]]:
    """Per sample, the milliseconds of each of STEPS."""
    with grpc.insecure_channel(endpoint) as channel:
        rt = pb_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
        im = pb_grpc.ImageServiceStub(channel)  # type: ignore[no-untyped-call]
        im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=IMAGE)), timeout=300)
        one(rt, -1, logs=logs)  # warm-up: first sandbox image unpack, plugin caches
        return [one(rt, i, logs=logs) for i in range(n)]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cri.lifecycle")
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    tools = tools_bin()
    root = Path(tempfile.mkdtemp(prefix="kubelet-py-bench-life-"))
    series: list[Series] = []
    p50: dict[str, float] = {}
    p99: dict[str, float] = {}
    steps: list[str] = []
    try:
        reg = registry.up(root / "registry")
        try:
            # engined on the graph driver it defaults to (overlay), as a user runs it
            ours = functools.partial(private_engined, graph_driver="overlay")
            ours_kpy = functools.partial(private_engined, graph_driver="overlay", cni="kpy")
            for name, starter in (("engined", ours), ("containerd", private_containerd),
                                  ("engined+kpy-cni", ours_kpy)):
                with starter(root / name, reg, tools=tools) as endpoint:
                    samples = run(endpoint, args.n, logs=root / f"{name}-logs")
                starts = [sum(s[:3]) for s in samples]
                teardowns = [sum(s[3:]) for s in samples]
                steps.append(f"- {name}, p50 per RPC: " + ", ".join(
                    f"{step} {statistics.median(s[k] for s in samples):.0f} ms"
                    for k, step in enumerate(STEPS)))
                print(steps[-1], flush=True)
                for phase, samples_ms in (("start", starts), ("teardown", teardowns)):
                    one_series = Series(f"{name} {phase}", tuple(samples_ms), "ms")
                    series.append(one_series)
                    p50[f"{name} {phase}"] = one_series.p50
                    p99[f"{name} {phase}"] = one_series.p99
                    print(f"{name} {phase}: p50 {one_series.p50:.0f} ms, p99 "
                          f"{one_series.p99:.0f} ms, max {max(samples_ms):.0f} ms",
                          flush=True)
        finally:
            registry.down(root / "registry")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not args.no_record:
        record(name="cri-pod-lifecycle",
               title="Pod lifecycle through the CRI (bridge network, pulled image)",
               command="make bench-cri-lifecycle", series=series,
               ratios={f"{phase} {q}, {ours} / containerd":
                       by[f"{ours} {phase}"] / by[f"containerd {phase}"]
                       for q, by in (("p50", p50), ("p99", p99))
                       for ours in ("engined", "engined+kpy-cni")
                       for phase in ("start", "teardown")},
               notes=(f"{args.n} samples each after one warm-up. start = RunPodSandbox + "
                      "CreateContainer + StartContainer; teardown = StopContainer(0) + "
                      "RemoveContainer + StopPodSandbox + RemovePodSandbox. engined: default "
                      "exec driver (native) and graph driver (overlay); engined and "
                      "containerd both call the reference bridge/host-local/portmap "
                      "executables; engined+kpy-cni: the same engined with our kpy-bridge/"
                      "kpy-host-local (run in-process, the engine's default setup) and the "
                      "reference portmap; "
                      "containerd v2.2.9 with runc. Goal (issue 5): start p50 at most half "
                      f"of containerd's; report p99 (nearest rank of {args.n} samples: "
                      "with 20, the slowest). Load average at the end: "
                      + " ".join(Path("/proc/loadavg").read_text().split()[:3])
                      + "\n\n" + "\n".join(steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
