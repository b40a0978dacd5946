"""API create -> Running (seen through a watch) for 1 pod and a batch, plus kubelet-py's
footprint (RSS, CPU) idle and with the batch running.

Brings up its own control plane, local registry and a private containerd (the test
harness), joins kubelet-py to it, measures, and tears everything down:

    .venv/bin/python -m bench.kubelet.pod_latency [--batch 110] [--runtimes containerd,engined]

--runtimes picks the CRI runtimes, each a private instance: containerd, engined (default
both, one after the other, against the same control plane).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.kubelet.runtimes import private_containerd, private_engined
from bench.report import Series, percentile, record
from kubelet_py.client.informer import Informer
from kubelet_py.client.kubeconfig import load_kubeconfig
from kubelet_py.client.rest import RestClient
from tests.harness import cluster, registry
from tests.harness.prereq import tools_bin

BUSYBOX = "docker.io/library/busybox:1.36"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time one process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
                .splitlines() if line.startswith("VmRSS:")) / 1024


def footprint(pid: int, seconds: float) -> tuple[float, float]:
    """(RSS MiB, CPU cores averaged over `seconds`) of one process."""
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    used = (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)
    return rss_mib(pid), used


_OP = re.compile(r'^kubelet_runtime_operations_duration_seconds_(sum|count)'
                 r'\{operation_type="([a-z_]+)"\} (\S+)$')


def runtime_operations(cp: cluster.ControlPlane, port: int) -> dict[str, tuple[int, float]]:
    """operation type -> (calls, seconds) from kubelet-py's /metrics, read as the API server
    reads the kubelet API (its kubelet client certificate; its node proxy refuses loopback
    node addresses)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(cp.layout.cert("apiserver-kubelet-client")),
                        str(cp.layout.key("apiserver-kubelet-client")))
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=ctx,
                                    timeout=20) as resp:
            text = resp.read().decode()
    except OSError as exc:
        print(f"kubelet metrics not read: {exc}", file=sys.stderr)
        return {}
    counts: dict[str, int] = {}
    sums: dict[str, float] = {}
    for line in text.splitlines():
        match = _OP.match(line)
        if match is None:
            continue
        kind, op, value = match.groups()
        if kind == "count":
            counts[op] = int(float(value))
        else:
            sums[op] = float(value)
    return {op: (n, sums.get(op, 0.0)) for op, n in counts.items()}


def operations_delta(before: dict[str, tuple[int, float]],
                     after: dict[str, tuple[int, float]]) -> dict[str, dict[str, float]]:
    """CRI calls made between two scrapes: count, total and mean latency per operation."""
    out: dict[str, dict[str, float]] = {}
    for op, (n, secs) in after.items():
        n0, s0 = before.get(op, (0, 0.0))
        if n > n0:
            out[op] = {"calls": n - n0, "total_s": round(secs - s0, 2),
                       "mean_ms": round(1000 * (secs - s0) / (n - n0), 1)}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["total_s"]))


def pod(name: str, node: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "c", "image": BUSYBOX,
                                     "command": ["sh", "-c", "sleep 3600"]}]}}


async def create_and_wait(rest: RestClient, *, names: list[str], node: str,
                          namespace: str) -> dict[str, float]:
    """Seconds from each create call to the watch event showing phase Running."""
    running: dict[str, float] = {}
    created: dict[str, float] = {}
    done = asyncio.Event()

    def seen(kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if obj.get("status", {}).get("phase") == "Running" and name in created \
                and name not in running:
            running[name] = time.monotonic() - created[name]
            if len(running) == len(names):
                done.set()

    informer = Informer(rest, f"/api/v1/namespaces/{namespace}/pods", handler=seen)
    task = asyncio.create_task(informer.run())
    await informer.synced.wait()

    async def one(name: str) -> None:
        created[name] = time.monotonic()
        await rest.create(f"/api/v1/namespaces/{namespace}/pods", pod(name, node, namespace))

    await asyncio.gather(*(one(n) for n in names))
    await asyncio.wait_for(done.wait(), 300)
    task.cancel()
    return running


def summary(label: str, lat: dict[str, float], total: float) -> dict[str, Any]:
    values = sorted(lat.values())
    return {"case": label, "pods": len(values), "p50_s": round(statistics.median(values), 3),
            "p99_s": round(percentile(values, 99), 3), "total_s": round(total, 3),
            "samples": values}


async def measure(cp: cluster.ControlPlane, node: str, batch: int, pid: int, *,
                  port: int) -> list[Any]:
    rest = RestClient(load_kubeconfig(cp.kubeconfig))
    ns = f"bench-{secrets.token_hex(3)}"
    await rest.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    results: list[Any] = []
    try:
        rss, cpu = footprint(pid, 10.0)
        results.append({"case": "idle", "rss_mib": round(rss, 1), "cpu_cores": round(cpu, 3)})
        start = time.monotonic()
        results.append(summary("1 pod", await create_and_wait(
            rest, names=["single"], node=node, namespace=ns), time.monotonic() - start))
        names = [f"p{i}" for i in range(batch - 1)]
        ops_before = runtime_operations(cp, port)
        start, start_cpu = time.monotonic(), cpu_seconds(pid)
        row = summary(f"{len(names)} pods", await create_and_wait(
            rest, names=names, node=node, namespace=ns), time.monotonic() - start)
        # What the kubelet itself spent while the batch came up (is it the bottleneck?).
        row["kubelet_cpu_s"] = round(cpu_seconds(pid) - start_cpu, 2)
        row["kubelet_rss_mib"] = round(rss_mib(pid), 1)
        row["cri_ops"] = operations_delta(ops_before, runtime_operations(cp, port))
        results.append(row)
        rss, cpu = footprint(pid, 10.0)
        results.append({"case": f"{batch} pods running", "rss_mib": round(rss, 1),
                        "cpu_cores": round(cpu, 3)})
    finally:
        await rest.delete(f"/api/v1/namespaces/{ns}")
        await rest.close()
    return results


def _record(rows: list[dict[str, Any]], *, batch: int, runtimes: str) -> None:
    series = [Series(f"{row['runtime']}: {row['case']}", tuple(row["samples"]), "s")
              for row in rows if "samples" in row]
    prints = "; ".join(f"{row['runtime']} {row['case']}: RSS {row['rss_mib']} MiB, "
                       f"{row['cpu_cores']} cores" for row in rows if "rss_mib" in row)
    totals = "; ".join(f"{row['runtime']} {row['case']}: total {row['total_s']} s"
                       + (f" (kubelet-py CPU {row['kubelet_cpu_s']} s, RSS "
                          f"{row['kubelet_rss_mib']} MiB at the end)"
                          if "kubelet_cpu_s" in row else "")
                       for row in rows if "total_s" in row)
    ready = "; ".join(f"{row['runtime']}: node Ready {row['ready_s']} s after join "
                      f"(1-min load average {row['load_before']} before, "
                      f"{row['load_after']} after its runs)"
                      for row in rows if "ready_s" in row)
    ops = "; ".join(
        f"{row['runtime']} {row['case']} CRI calls (calls, mean, total): " + ", ".join(
            f"{op} {v['calls']:.0f}x {v['mean_ms']} ms = {v['total_s']} s"
            for op, v in list(row["cri_ops"].items())[:6])
        for row in rows if row.get("cri_ops"))
    record(name="kubelet_pod_latency",
           title="Pod API create to Running (watch), and kubelet-py footprint",
           command=f".venv/bin/python -m bench.kubelet.pod_latency --batch {batch} "
                   f"--runtimes {runtimes} --record",
           series=series, ratios={},
           notes=f"{ready}. {totals}. Footprint: {prints}. {ops}.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_node(cp: cluster.ControlPlane, root: Path, *, endpoint: str, batch: int
             ) -> list[dict[str, Any]]:
    """Join a fresh kubelet-py on `endpoint`, measure, stop it."""
    node = f"bench-{secrets.token_hex(3)}"
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    kubelet = subprocess.Popen(
        [sys.executable, "-m", "kubelet_py.cli", "join", "--server", cp.server,
         "--token", cp.token, "--discovery-token-ca-cert-hash", cp.ca_cert_hash,
         "--root-dir", str(root / "kubelet"), "--hostname-override", node,
         "--node-ip", "127.0.0.1", "--address", "127.0.0.1", "--port", str(port),
         "--healthz-port", "0", "--pod-logs-dir", str(root / "logs"),
         "--max-pods", str(max(110, batch)), "--container-runtime-endpoint", endpoint],
        stdout=subprocess.DEVNULL, stderr=(root / "kubelet.log").open("wb"))
    try:
        ready = None
        while ready is None and time.monotonic() - started < 60:
            out = cp.kubectl("get", "node", node, "-o", "json", check=False)
            if out.returncode == 0 and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in json.loads(out.stdout)["status"]["conditions"]):
                ready = time.monotonic() - started
            time.sleep(0.1)
        if ready is None:
            raise RuntimeError(f"node {node} not Ready in 60 s; see {root / 'kubelet.log'}")
        load = os.getloadavg()[0]
        rows = asyncio.run(measure(cp, node, batch, kubelet.pid, port=port))
        return [{"case": "join", "ready_s": round(ready, 2),
                 "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)},
                *rows]
    finally:
        kubelet.send_signal(signal.SIGTERM)
        kubelet.wait(60)
        cp.kubectl("delete", "node", node, "--wait=false", check=False)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kubelet.pod_latency")
    parser.add_argument("--batch", type=int, default=110)
    parser.add_argument("--runtimes", default="containerd,engined",
                        help="comma-separated: containerd, engined (private instances)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch directory (kubelet logs, runtime state)")
    parser.add_argument("--record", action="store_true",
                        help="write bench/results and the docs/benchmarks.md section")
    args = parser.parse_args()
    tools = tools_bin()
    root = Path(tempfile.mkdtemp(prefix="kubelet-py-bench-"))
    cp = cluster.up(root / "cluster", tools=tools, detach=False)
    reg = registry.up(root / "registry")
    starters = {"containerd": private_containerd, "engined": private_engined}
    rows: list[dict[str, Any]] = []
    try:
        for name in args.runtimes.split(","):
            with starters[name](root / name, reg, tools=tools) as endpoint:
                for row in run_node(cp, root / f"node-{name}", endpoint=endpoint,
                                    batch=args.batch):
                    rows.append({"runtime": name, **row})
                    print(json.dumps({k: v for k, v in rows[-1].items() if k != "samples"}),
                          flush=True)
        if args.record:
            _record(rows, batch=args.batch, runtimes=args.runtimes)
    finally:
        registry.down(root / "registry")
        cluster.down(root / "cluster")
        _remove(root, keep=args.keep)
    return 0


def _remove(root: Path, *, keep: bool) -> None:
    """Drop the scratch directory unless asked to keep it (kubelet logs are in node-*/) or
    something is still mounted below it (never delete through a mount)."""
    mounted = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
               if line.split()[1].startswith(str(root))]
    if keep or mounted:
        print(f"scratch directory kept: {root}" + (f" ({len(mounted)} mounts left)"
                                                    if mounted else ""), file=sys.stderr)
        return
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
