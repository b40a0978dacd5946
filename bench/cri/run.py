"""Unary CRI RPCs under load with N pods present: engined against containerd.

engined serves a state store holding the pods (written directly, see bench.cri.pods);
containerd holds as many real pods (see bench.cri.peer). Against each, for each RPC,
`--procs` load-generator processes (bench.cri.load) keep `--concurrency` RPCs in flight
each on the unix socket for `--seconds`; we report RPC/s and per-RPC latency.

    .venv/bin/python -m bench.cri.run [--pods 110] [--peer containerd|none] [--no-record]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.cri import pods
from bench.report import Series, percentile, record

RPCS = ("ContainerStatus", "ListContainers")


@contextlib.contextmanager
def private_engined(root: Path, *, pod_count: int, per_pod: int) -> Iterator[
        tuple[str, list[str]]]:
    """engined (the real daemon) on a private socket over a store holding the pods."""
    monitor = pods.placeholder_monitor()
    proc: subprocess.Popen[bytes] | None = None
    try:
        cids = pods.populate(root / "run", pods=pod_count, containers_per_pod=per_pod,
                             monitor_pid=monitor.pid)
        (root / "net.d").mkdir()
        sock = root / "engine.sock"
        with (root / "engined.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cri.daemon", "--listen", f"unix://{sock}",
                 "--root", str(root / "root"), "--run-root", str(root / "run"),
                 "--cni-conf-dir", str(root / "net.d"), "--log-level", "warning"],
                stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("engined did not start:\n"
                                 + (root / "engined.log").read_text()[-3000:])
            time.sleep(0.1)
        yield f"unix://{sock}", cids
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        monitor.kill()
        monitor.wait()


def load_command() -> list[str]:
    return [sys.executable, "-m", "bench.cri.load"]


def measure(endpoint: str, rpc: str, ids: Sequence[str], *, procs: int,
            concurrency: int, seconds: float) -> tuple[list[float], float, dict[str, int]]:
    """Latencies (ms) of every RPC in the window, RPC/s over all processes, error codes."""
    cmd = [*load_command(), "--endpoint", endpoint, "--rpc", rpc,
           "--ids", ",".join(ids), "--concurrency", str(concurrency),
           "--seconds", str(seconds)]
    runners = [subprocess.Popen(cmd, stdout=subprocess.PIPE) for _ in range(procs)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    for r in runners:
        out, _ = r.communicate(timeout=seconds + 120)
        if r.returncode != 0:
            raise SystemExit(f"load generator failed ({r.returncode})")
        result = json.loads(out)
        latencies += result["latencies_ms"]
        for code, n in result["errors"].items():
            errors[code] = errors.get(code, 0) + n
    if not latencies:
        raise SystemExit(f"{rpc}: no RPC completed (errors {errors})")
    return latencies, len(latencies) / seconds, errors


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_all(label: str, endpoint: str, ids: Sequence[str], args: argparse.Namespace,
            series: list[Series], ratios: dict[str, float], notes: list[str]) -> None:
    for rpc in args.rpcs.split(","):
        for procs, concurrency in ((args.procs, args.concurrency), (1, 1)):
            before = load_average()
            lat, rps, errors = measure(endpoint, rpc, ids, procs=procs,
                                       concurrency=concurrency, seconds=args.seconds)
            name = f"{label} {rpc}, {procs * concurrency} in flight"
            series.append(Series(name, tuple(lat), "ms"))
            ratios[f"{name}: RPC/s"] = rps
            line = (f"{name}: {rps:.0f} RPC/s, p50 {percentile(lat, 50):.2f} ms, "
                    f"p99 {percentile(lat, 99):.2f} ms, errors {errors or 'none'}, "
                    f"load average before {before}")
            notes.append(f"- {line}")
            print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cri.run")
    ap.add_argument("--pods", type=int, default=110)
    ap.add_argument("--containers-per-pod", type=int, default=1)
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes")
    ap.add_argument("--concurrency", type=int, default=8, help="RPCs in flight per process")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rpcs", default=",".join(RPCS))
    ap.add_argument("--peer", choices=("containerd", "none"), default="containerd")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0 and args.peer == "containerd":
        raise SystemExit("the containerd peer needs root (or pass --peer none)")
    series: list[Series] = []
    ratios: dict[str, float] = {}
    notes: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="kubelet-py-bench-cri-"))
    try:
        with private_engined(root / "engined", pod_count=args.pods,
                             per_pod=args.containers_per_pod) as (endpoint, ids):
            run_all("engined", endpoint, ids, args, series, ratios, notes)
        if args.peer == "containerd":
            from bench.cri import peer
            from tests.harness.prereq import tools_bin

            with peer.private_containerd(root / "peer", tools=tools_bin()) as endpoint:
                t0 = time.monotonic()
                ids = peer.make_pods(endpoint, pods=args.pods,
                                     containers_per_pod=args.containers_per_pod)
                print(f"containerd: {args.pods} pods made in {time.monotonic() - t0:.0f}s",
                      flush=True)
                run_all("containerd", endpoint, ids, args, series, ratios, notes)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not args.no_record:
        extra = " ".join(sys.argv[1:] if argv is None else argv)
        command = f"make bench-cri BENCH_CRI_ARGS='{extra}'" if extra else "make bench-cri"
        record(name="cri-unary", title=f"Unary CRI RPCs, {args.pods} pods present",
               command=command, series=series, ratios=ratios, notes="\n".join([
                   f"{args.pods} pods x {args.containers_per_pod} container(s); "
                   f"{args.procs} load processes x {args.concurrency} RPCs in flight, "
                   f"then 1 process x 1 in flight; {args.seconds:.0f}s per pass; "
                   "Python (grpc.aio) load generators on the unix socket, on the same "
                   f"{os.cpu_count()}-core machine as the server. engined "
                   "serves records written straight into its store (bench/cri/pods.py); "
                   "containerd serves real pods (runc, host network).", "", *notes]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
