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
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
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


def footprint(pid: int, seconds: float) -> tuple[float, float]:
    """(RSS MiB, CPU cores averaged over `seconds`) of one process."""
    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    start_cpu, start = cpu(), time.monotonic()
    time.sleep(seconds)
    used = (cpu() - start_cpu) / (time.monotonic() - start)
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
               .splitlines() if line.startswith("VmRSS:"))
    return rss / 1024, used


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


async def measure(cp: cluster.ControlPlane, node: str, batch: int, pid: int) -> list[Any]:
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
        start = time.monotonic()
        results.append(summary(f"{len(names)} pods", await create_and_wait(
            rest, names=names, node=node, namespace=ns), time.monotonic() - start))
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
                       for row in rows if "total_s" in row)
    ready = "; ".join(f"{row['runtime']}: node Ready {row['ready_s']} s after join"
                      for row in rows if "ready_s" in row)
    record(name="kubelet_pod_latency",
           title="Pod API create to Running (watch), and kubelet-py footprint",
           command=f".venv/bin/python -m bench.kubelet.pod_latency --batch {batch} "
                   f"--runtimes {runtimes} --record",
           series=series, ratios={}, notes=f"{ready}. {totals}. Footprint: {prints}.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_node(cp: cluster.ControlPlane, root: Path, *, endpoint: str, batch: int
             ) -> list[dict[str, Any]]:
    """Join a fresh kubelet-py on `endpoint`, measure, stop it."""
    node = f"bench-{secrets.token_hex(3)}"
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    kubelet = subprocess.Popen(
        [sys.executable, "-m", "kubelet_py.cli", "join", "--server", cp.server,
         "--token", cp.token, "--discovery-token-ca-cert-hash", cp.ca_cert_hash,
         "--root-dir", str(root / "kubelet"), "--hostname-override", node,
         "--node-ip", "127.0.0.1", "--address", "127.0.0.1", "--port", str(free_port()),
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
        rows = asyncio.run(measure(cp, node, batch, kubelet.pid))
        return [{"case": "join", "ready_s": round(ready, 2)}, *rows]
    finally:
        kubelet.send_signal(signal.SIGTERM)
        kubelet.wait(60)
        cp.kubectl("delete", "node", node, "--wait=false", check=False)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kubelet.pod_latency")
    parser.add_argument("--batch", type=int, default=110)
    parser.add_argument("--runtimes", default="containerd,engined",
                        help="comma-separated: containerd, engined (private instances)")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
