"""Unary CRI RPCs under load with N pods present: engined against containerd.

engined serves a state store holding the pods (written directly, see bench.cri.pods);
containerd holds as many real pods (see bench.cri.peer). Both run at once; for each RPC
and each load (connections x requests in flight per connection), h2load (bench.cri.h2)
sends one pre-encoded request over and over on the unix socket for `--seconds`, to one and
then the other (so both meet the same background load); we report RPC/s and per-RPC
latency. With `--python-load`, the older Python (grpc.aio) generator runs too,
labelled as such: on this 2-core machine it takes CPU the server needs.

    .venv/bin/python -m bench.cri.run [--pods 110] [--peer containerd|none] [--no-record]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
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

from google.protobuf import message as pb_message

from bench.cri import h2, pods
from bench.report import Series, percentile, record
from cri.api import runtime_pb2 as pb

RPCS = ("ContainerStatus", "ListContainers")
SERVICE = "/runtime.v1.RuntimeService/"
LOADS = ((1, 1), (4, 1), (4, 4))  # (connections, requests in flight on each)


@contextlib.contextmanager
def private_engined(root: Path, *, pod_count: int, per_pod: int,
                    grpc_server: str = "kpy") -> Iterator[tuple[str, list[str]]]:
    """engined (the real daemon) on a private socket over a store holding the pods,
    served by `grpc_server` (engined --grpc-server)."""
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
                 "--cni-conf-dir", str(root / "net.d"), "--log-level", "warning",
                 "--grpc-server", grpc_server],
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


def request_of(rpc: str, ids: Sequence[str]) -> pb_message.Message:
    if rpc == "ContainerStatus":
        return pb.ContainerStatusRequest(container_id=ids[len(ids) // 2])
    return pb.ListContainersRequest()


def verifier(rpc: str, ids: Sequence[str]) -> h2.Verify:
    """What a right answer to `request_of(rpc, ids)` looks like."""
    def verify(answer: bytes) -> str:
        if rpc == "ContainerStatus":
            status = pb.ContainerStatusResponse.FromString(answer).status
            want = ids[len(ids) // 2]
            if status.id != want or status.state != pb.CONTAINER_RUNNING:
                return f"status of {status.id!r} ({status.state}), wanted {want} running"
            return ""
        listed = {c.id for c in pb.ListContainersResponse.FromString(answer).containers}
        return "" if listed == set(ids) else f"{len(listed)} containers, wanted {len(ids)}"
    return verify


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclasses.dataclass(frozen=True)
class Contender:
    label: str
    endpoint: str
    ids: tuple[str, ...]


def h2load_passes(contenders: Sequence[Contender], args: argparse.Namespace, out: Path,
                  series: list[Series], ratios: dict[str, float], notes: list[str]) -> None:
    """Per RPC and load, one pass against each contender back to back, so both meet the
    same background load of this shared machine."""
    for rpc in args.rpcs.split(","):
        for clients, streams in LOADS:
            for c in contenders:
                h2load_pass(c, rpc, clients=clients, streams=streams, args=args, out=out,
                            series=series, ratios=ratios, notes=notes)


def h2load_pass(c: Contender, rpc: str, *, clients: int, streams: int,
                args: argparse.Namespace, out: Path, series: list[Series],
                ratios: dict[str, float], notes: list[str]) -> None:
    request = request_of(rpc, c.ids)
    body = out / f"{c.label}-{rpc}.grpc"
    body.write_bytes(h2.grpc_frame(request))
    verify = verifier(rpc, c.ids)
    h2.check(c.endpoint, SERVICE + rpc, request, verify)
    before = load_average()
    p = h2.run(socket=Path(c.endpoint.removeprefix("unix://")), method=SERVICE + rpc,
               body=body, clients=clients, streams=streams, seconds=args.seconds)
    h2.check(c.endpoint, SERVICE + rpc, request, verify)
    if p.failed or not p.latencies_ms:
        raise SystemExit(f"{c.label} {rpc}: {p.failed} failed of {p.requests}")
    name = f"{c.label} {rpc}, {clients * streams} in flight"
    series.append(Series(name, p.latencies_ms, "ms"))
    ratios[f"{name}: RPC/s"] = p.rps
    line = (f"{name}: {p.rps:.0f} RPC/s, p50 {percentile(p.latencies_ms, 50):.2f} ms, "
            f"p99 {percentile(p.latencies_ms, 99):.2f} ms ({clients} connection(s) x "
            f"{streams} stream(s), {p.succeeded} answers), load average before {before}, "
            f"after {load_average()}")
    notes.append(f"- {line}")
    print(line, flush=True)


def python_passes(label: str, endpoint: str, ids: Sequence[str], args: argparse.Namespace,
                  series: list[Series], ratios: dict[str, float], notes: list[str]) -> None:
    """The Python generator (bench.cri.load): 2 processes x 8 RPCs in flight."""
    for rpc in args.rpcs.split(","):
        cmd = [sys.executable, "-m", "bench.cri.load", "--endpoint", endpoint, "--rpc", rpc,
               "--ids", ",".join(ids), "--concurrency", "8", "--seconds", str(args.seconds)]
        before = load_average()
        runners = [subprocess.Popen(cmd, stdout=subprocess.PIPE) for _ in range(2)]
        latencies: list[float] = []
        errors: dict[str, int] = {}
        for r in runners:
            stdout, _ = r.communicate(timeout=args.seconds + 120)
            if r.returncode != 0:
                raise SystemExit(f"load generator failed ({r.returncode})")
            result = json.loads(stdout)
            latencies += result["latencies_ms"]
            for code, n in result["errors"].items():
                errors[code] = errors.get(code, 0) + n
        if errors or not latencies:
            raise SystemExit(f"{label} {rpc}: errors {errors}")
        name = f"{label} {rpc}, 16 in flight, Python client"
        rps = len(latencies) / args.seconds
        series.append(Series(name, tuple(latencies), "ms"))
        ratios[f"{name}: RPC/s"] = rps
        line = (f"{name}: {rps:.0f} RPC/s, p50 {percentile(latencies, 50):.2f} ms, p99 "
                f"{percentile(latencies, 99):.2f} ms, load average before {before}")
        notes.append(f"- {line}")
        print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cri.run")
    ap.add_argument("--pods", type=int, default=110)
    ap.add_argument("--containers-per-pod", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5.0, help="per pass, after 1s warm-up")
    ap.add_argument("--rpcs", default=",".join(RPCS))
    ap.add_argument("--peer", choices=("containerd", "none"), default="containerd")
    ap.add_argument("--grpc-servers", default="kpy",
                    help="engined's gRPC server(s), comma-separated: kpy (ours) and/or grpcio; "
                         "with both, each is an engined of its own, measured side by side")
    ap.add_argument("--python-load", action="store_true",
                    help="also run the Python generator (2 processes x 8 in flight)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0 and args.peer == "containerd":
        raise SystemExit("the containerd peer needs root (or pass --peer none)")
    h2.binary()
    series: list[Series] = []
    ratios: dict[str, float] = {}
    notes: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="kubelet-py-bench-cri-"))
    try:
        with contextlib.ExitStack() as stack:
            kinds = args.grpc_servers.split(",")
            contenders = []
            for kind in kinds:
                endpoint, ids = stack.enter_context(private_engined(
                    root / f"engined-{kind}", pod_count=args.pods,
                    per_pod=args.containers_per_pod, grpc_server=kind))
                label = "engined" if kind == "kpy" else f"engined ({kind} server)"
                contenders.append(Contender(label, endpoint, tuple(ids)))
            if args.peer == "containerd":
                from bench.cri import peer
                from tests.harness.prereq import tools_bin

                endpoint = stack.enter_context(peer.private_containerd(root / "peer",
                                                                       tools=tools_bin()))
                t0 = time.monotonic()
                ids = peer.make_pods(endpoint, pods=args.pods,
                                     containers_per_pod=args.containers_per_pod)
                print(f"containerd: {args.pods} pods made in {time.monotonic() - t0:.0f}s",
                      flush=True)
                contenders.append(Contender("containerd", endpoint, tuple(ids)))
            h2load_passes(contenders, args, root, series, ratios, notes)
            if args.python_load:
                for c in contenders:
                    python_passes(c.label, c.endpoint, c.ids, args, series, ratios, notes)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not args.no_record:
        extra = " ".join(sys.argv[1:] if argv is None else argv)
        command = f"make bench-cri BENCH_CRI_ARGS='{extra}'" if extra else "make bench-cri"
        record(name="cri-unary", title=f"Unary CRI RPCs, {args.pods} pods present",
               command=command, series=series, ratios=ratios, notes="\n".join([
                   f"{args.pods} pods x {args.containers_per_pod} container(s). Load: "
                   "h2load (nghttp2-client, C) on the unix socket, one pre-encoded request "
                   "(ContainerStatus of one container; ListContainers unfiltered) sent "
                   "over and over, both servers up at once and measured back to back per "
                   f"RPC and load; loads {', '.join(f'{c}x{s}' for c, s in LOADS)} "
                   "(connections x in-flight requests each); "
                   f"{args.seconds:.0f}s measured per pass after 1s warm-up; each pass "
                   "preceded and followed by the same request through a gRPC client, "
                   "which must answer OK and right. Same "
                   f"{os.cpu_count()}-core machine as the servers, shared with other work "
                   "(load averages per pass below). engined serves records written "
                   "straight into its store (bench/cri/pods.py); containerd v2.2.9 serves "
                   "real pods (runc, host network). Goal (issue 5): >= 3,000 RPC/s with "
                   "p99 < 5 ms. engined serves the CRI with its own HTTP/2 server (cri.h2, "
                   "`--grpc-server kpy`, the default) unless labelled otherwise.",
                   "", *notes]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
