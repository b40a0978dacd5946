"""ADD+DEL latency per pod and 200 pods concurrently: kpy-bridge/kpy-host-local vs the
reference bridge/host-local (as executables), plus our in-process path; with ipMasq and
without. DEL gets the ADD result as prevResult, as libcni (containerd, cnitool) and our
engine pass it.

Run as root: `make bench-cni` (BENCH_ARGS="--pods 40 --concurrent 200 --workers 200").
Creates only its own netns, bridges and data dirs, and removes them.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.report import RESULTS, Series, record
from engine.networkdriver.plugins import bridge, install, masq, masq_nft, netlink
from engine.networkdriver.plugins.reaper import Reaper
from tests.harness.prereq import tools_bin

COMMAND = "make bench-cni"


def conf(kind: str, ipam: str, name: str, bridge_name: str, data_dir: Path,
         subnet: str, *, masq: bool) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": name, "type": kind, "bridge": bridge_name,
            "isGateway": True, "ipMasq": masq, "hairpinMode": True,
            "ipam": {"type": ipam, "dataDir": str(data_dir), "subnet": subnet}}


class Contender:
    def __init__(self, label: str, kind: str, ipam: str, *, tag: str, bin_dir: Path,
                 root: Path, subnet: str, masq: bool, in_process: bool = False,
                 deferred: bool = True, backend: str = "") -> None:
        self.label, self.kind, self.bin_dir, self.in_process = label, kind, bin_dir, in_process
        # in-process as the engine runs it: DEL leaves the veth deletion to a reaper thread
        # (deferred=False: DEL deletes it before returning, as an exec does)
        self.reaper = Reaper() if in_process and deferred else None
        self.name, self.bridge = f"kpyb-{tag}", f"kpyb{tag}"
        self.data_dir = root / f"ipam-{tag}"
        self.conf = conf(kind, ipam, self.name, self.bridge, self.data_dir, subnet, masq=masq)
        if backend:  # else the plugin's default (kpy: nftables when the kernel has it)
            self.conf["ipMasqBackend"] = backend

    def call(self, command: str, netns: str, cid: str,
             prev: dict[str, Any] | None = None) -> dict[str, Any] | None:
        env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns,
               "CNI_IFNAME": "eth0", "CNI_PATH": str(self.bin_dir)}
        stdin = json.dumps({**self.conf, "prevResult": prev} if prev else self.conf).encode()
        if self.in_process:
            code, out = bridge.run(env, stdin, reaper=self.reaper)
        else:
            proc = subprocess.run([str(self.bin_dir / self.kind)], input=stdin, env=env,
                                  capture_output=True, check=False)
            code, out = proc.returncode, proc.stdout
        if code != 0:
            raise RuntimeError(f"{self.label} {command} {cid}: {out.decode(errors='replace')}")
        return json.loads(out) if out.strip() else None

    def settle(self) -> float:
        """Wait for the reaper's deferred deletions; the milliseconds waited."""
        start = time.perf_counter()
        if self.reaper is not None and not self.reaper.wait(timeout=120):
            raise RuntimeError(f"{self.label}: deferred deletions still pending after 120 s")
        return (time.perf_counter() - start) * 1000

    def leaks(self) -> dict[str, int]:
        self.settle()
        files = [p for p in (self.data_dir / self.name).glob("*") if p.name[0].isdigit()] \
            if (self.data_dir / self.name).is_dir() else []
        ports = os.listdir(f"/sys/class/net/{self.bridge}/brif") \
            if os.path.isdir(f"/sys/class/net/{self.bridge}") else []
        saved = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True,
                               check=False).stdout
        rules = [line for line in saved.splitlines()
                 if f'"{self.name}"' in line or f"name={self.name} " in line]
        nft = int(masq_nft.has_rules(self.name))  # our nftables tables: 1 if any rule is left
        return {"ip_files": len(files), "bridge_ports": len(ports),
                "nat_rules": len(rules) + nft}

    def cleanup(self) -> None:
        self.settle()
        masq.gc(self.name, set())
        masq_nft.gc(self.name, set())
        with netlink.session() as nl:
            index = netlink.lookup(nl, self.bridge)
            if index is not None:
                nl.del_link(index)


def netns_pool(n: int, prefix: str) -> list[str]:
    names = [f"{prefix}{i}" for i in range(n)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    return names


def drop_netns(names: list[str]) -> None:
    for name in names:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def cpu_ms() -> float:
    """CPU time (user + system) of this process and its waited-for children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return (me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime) * 1000


def latency(contenders: list[Contender], pods: int,
            netns: list[str]) -> tuple[list[Series], list[Series], dict[str, str]]:
    """Wall and CPU milliseconds of ADD+DEL (CPU is what a loaded machine makes wall), and
    per contender the ADD and DEL p50 apart (DEL waits on the kernel's veth unregister)."""
    wall: dict[str, list[float]] = {c.label: [] for c in contenders}
    cpu: dict[str, list[float]] = {c.label: [] for c in contenders}
    adds: dict[str, list[float]] = {c.label: [] for c in contenders}
    dels: dict[str, list[float]] = {c.label: [] for c in contenders}
    for i in range(pods):  # interleaved, so load changes hit every contender alike
        for c in contenders:
            path = f"/run/netns/{netns[i]}"
            cpu0 = cpu_ms()
            t0 = time.perf_counter()
            result = c.call("ADD", path, f"lat{i}")
            t1 = time.perf_counter()
            c.call("DEL", path, f"lat{i}", result)
            t2 = time.perf_counter()
            # the deferred veth deletion: untimed, but its CPU counted, and over before the
            # next contender starts (it would slow whoever comes next)
            c.settle()
            cpu[c.label].append(cpu_ms() - cpu0)
            wall[c.label].append((t2 - t0) * 1000)
            adds[c.label].append((t1 - t0) * 1000)
            dels[c.label].append((t2 - t1) * 1000)
    split = {label: f"ADD p50 {statistics.median(adds[label]):.1f} ms, "
                    f"DEL p50 {statistics.median(dels[label]):.1f} ms" for label in wall}
    return ([Series(label, tuple(s), "ms") for label, s in wall.items()],
            [Series(f"{label} (CPU)", tuple(s), "ms") for label, s in cpu.items()], split)


def concurrent_run(c: Contender, netns: list[str], workers: int) -> dict[str, Any]:
    results: dict[int, dict[str, Any]] = {}

    def add(i: int) -> tuple[float, str]:
        t0 = time.perf_counter()
        result = c.call("ADD", f"/run/netns/{netns[i]}", f"conc{i}")
        assert result is not None
        results[i] = result
        return (time.perf_counter() - t0) * 1000, result["ips"][0]["address"]

    def delete(i: int) -> float:
        return timed(lambda: c.call("DEL", f"/run/netns/{netns[i]}", f"conc{i}", results[i]))

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        adds = list(pool.map(add, range(len(netns))))
        add_total = time.perf_counter() - start
        dels = list(pool.map(delete, range(len(netns))))
    total = time.perf_counter() - start
    addrs = [a for _, a in adds]
    return {"pods": len(netns), "workers": workers, "add_total_s": add_total,
            "total_s": total, "duplicates": len(addrs) - len(set(addrs)), "leaks": c.leaks(),
            "op_ms": [t for t, _ in adds] + dels}


def concurrent_abba(first: Contender, second: Contender, netns: list[str],
                    workers: int) -> dict[str, dict[str, Any]]:
    """Each contender twice, in the order A B B A: what one run leaves the kernel doing
    (deferred frees after 200 deletions) slows the next, and the order must not decide.
    Totals are the mean of the two runs."""
    runs: dict[str, list[dict[str, Any]]] = {first.label: [], second.label: []}
    for c in (first, second, second, first):
        runs[c.label].append(concurrent_run(c, netns, workers))
    out = {}
    for label, (a, b) in runs.items():
        out[label] = {"pods": a["pods"], "workers": workers,
                      "total_s": (a["total_s"] + b["total_s"]) / 2,
                      "add_total_s": (a["add_total_s"] + b["add_total_s"]) / 2,
                      "runs_s": [a["total_s"], b["total_s"]],
                      "duplicates": a["duplicates"] + b["duplicates"],
                      "leaks": {k: a["leaks"][k] + b["leaks"][k] for k in a["leaks"]},
                      "op_ms": a["op_ms"] + b["op_ms"]}
    return out


def contenders_for(bin_dir: Path, root: Path, *, masq: bool) -> list[Contender]:
    m = "M" if masq else "N"
    third = 1 if masq else 2
    # with ipMasq, kpy's default backend is nftables over nfnetlink; its iptables backend
    # (iptables-restore execs) is measured beside it
    iptables = [
        Contender("kpy exec, iptables", "kpy-bridge", "kpy-host-local", tag=f"kxt{m}",
                  bin_dir=bin_dir, root=root, subnet="10.219.0.0/16", masq=masq,
                  backend="iptables"),
        Contender("kpy in-process, iptables", "kpy-bridge", "kpy-host-local", tag=f"kit{m}",
                  bin_dir=bin_dir, root=root, subnet="10.218.0.0/16", masq=masq,
                  in_process=True, backend="iptables")] if masq else []
    return [
        Contender("kpy exec", "kpy-bridge", "kpy-host-local", tag=f"kpy{m}", bin_dir=bin_dir,
                  root=root, subnet=f"10.25{third}.0.0/16", masq=masq),
        Contender("reference exec", "bridge", "host-local", tag=f"ref{m}", bin_dir=bin_dir,
                  root=root, subnet=f"10.24{third}.0.0/16", masq=masq),
        # before the deferred one: a pod's contenders share its netns, and eth0 of the
        # deferred one is still being deleted when its DEL returns
        Contender("kpy in-process, sync veth delete", "kpy-bridge", "kpy-host-local",
                  tag=f"kis{m}", bin_dir=bin_dir, root=root, subnet=f"10.22{third}.0.0/16",
                  masq=masq, in_process=True, deferred=False),
        Contender("kpy in-process", "kpy-bridge", "kpy-host-local", tag=f"kip{m}",
                  bin_dir=bin_dir, root=root, subnet=f"10.23{third}.0.0/16", masq=masq,
                  in_process=True), *iptables]


def record_latency(contenders: list[Contender], pods: int, pool: list[str], *,
                   masq: bool, python: str) -> list[Series]:
    load0 = os.getloadavg()[0]
    lat, cpu, split = latency(contenders, pods, pool)
    by = {s.label: s for s in lat + cpu}
    mode = "ipMasq" if masq else "no ipMasq"
    record(name="cni-add-del" if masq else "cni-add-del-nomasq",
           title=f"CNI ADD+DEL per pod (bridge + host-local IPAM, {mode})",
           command=COMMAND, series=lat + cpu,
           ratios={"kpy exec p50 / reference p50": by["kpy exec"].p50 / by["reference exec"].p50,
                   "kpy exec p99 / reference p99": by["kpy exec"].p99 / by["reference exec"].p99,
                   "kpy exec CPU p50 / reference CPU p50":
                       by["kpy exec (CPU)"].p50 / by["reference exec (CPU)"].p50,
                   "kpy in-process p50 (ms)": by["kpy in-process"].p50,
                   "kpy in-process CPU p50 (ms)": by["kpy in-process (CPU)"].p50},
           notes=f"One pod at a time; ADD then DEL (with prevResult), both timed, isGateway+"
                 f"hairpin, {mode}. "
                 + "; ".join(f"{label}: {text}" for label, text in split.items())
                 + f". kpy executables run on {python} (install --python auto). In-process"
                 " DEL (as the engine runs it) leaves the veth deletion (the kernel's RCU"
                 " barrier, 15-25 ms of sleep) to a reaper thread once the pod is off the"
                 " bridge and its address and masquerade rules are released; 'sync veth"
                 " delete' waits for it, as an exec does. The deferred deletion is waited"
                 " for (untimed) before the next contender starts; its CPU is counted."
                 + (" With ipMasq, kpy's default backend is nftables spoken over nfnetlink"
                    " (tables ip/ip6 kpy-nat, one atomic batch per family and change; in"
                    " process one socket kept open across calls); the 'iptables' contenders"
                    " use ipMasqBackend iptables: one iptables-restore per family and change"
                    " (the reference runs iptables once per rule), and a restore that deletes"
                    " rules spends ~15 ms in close() of its nf_tables netlink socket (the"
                    " kernel waits there for the deleted rules' deferred frees, an RCU grace"
                    " period)."
                    if masq else "")
                 + f" Load average at the start {load0:.1f}, at the end "
                 f"{os.getloadavg()[0]:.1f}, on {os.cpu_count()} cores.")
    for s in lat + cpu:
        print(f"{mode:9s} {s.label:38s} ADD+DEL p50 {s.p50:7.1f} ms  p99 {s.p99:7.1f} ms")
    for label, text in split.items():
        print(f"{mode:9s} {label:38s} {text}")
    return lat + cpu


def record_concurrent(runs: dict[str, dict[str, Any]], *, pods: int, masq: bool) -> None:
    mode = "ipMasq" if masq else "no ipMasq"
    record(
        name="cni-concurrent" if masq else "cni-concurrent-nomasq",
        title=f"{pods} concurrent ADDs then DELs ({mode})", command=COMMAND,
        series=[Series(f"{label} ({v['workers']} in flight)", tuple(v["op_ms"]), "ms")
                for label, v in runs.items()],
        ratios={"kpy total / reference total": runs["kpy exec"]["total_s"]
                / runs["reference exec"]["total_s"]},
        notes="Two runs per contender in the order A B B A; totals are their mean.\n\n"
        + "\n".join(
            f"- {label}: total {v['total_s']:.1f} s (runs {v['runs_s'][0]:.1f} s and "
            f"{v['runs_s'][1]:.1f} s; ADDs {v['add_total_s']:.1f} s), "
            f"duplicates {v['duplicates']}, leaks after DEL {v['leaks']}"
            for label, v in runs.items())
        + f"\n\nLoad average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")
    for label, v in runs.items():
        print(f"{mode:9s} {label:16s} {v['pods']} pods: total {v['total_s']:.1f} s "
              f"(runs {v['runs_s'][0]:.1f} s, {v['runs_s'][1]:.1f} s), "
              f"duplicates {v['duplicates']}, leaks {v['leaks']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=40, help="sequential ADD+DEL samples")
    parser.add_argument("--concurrent", type=int, default=200, help="0: skip that part")
    parser.add_argument("--workers", type=int, default=200, help="ADDs in flight at once")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench-cni needs root (netns, bridges, iptables)")
    ref_bin = tools_bin()
    root = Path(tempfile.mkdtemp(prefix="kpy-bench-cni-"))
    bin_dir = root / "bin"
    python = install.fastest_python()
    install.install(bin_dir, python=python)
    for name in ("bridge", "host-local"):
        if not (ref_bin / name).exists():
            raise SystemExit(f"reference plugin {name} missing from {ref_bin}: run `make tools`")
        os.symlink(ref_bin / name, bin_dir / name)
    masq_on = contenders_for(bin_dir, root, masq=True)
    masq_off = contenders_for(bin_dir, root, masq=False)
    pool = netns_pool(max(args.pods, args.concurrent), f"kpyb{os.getpid() % 10000}-")
    conc: dict[bool, dict[str, dict[str, Any]]] = {}
    try:
        record_latency(masq_off, args.pods, pool, masq=False, python=python)
        record_latency(masq_on, args.pods, pool, masq=True, python=python)
        if args.concurrent:
            for with_masq, contenders in ((True, masq_on), (False, masq_off)):
                conc[with_masq] = concurrent_abba(contenders[0], contenders[1],
                                                  pool[:args.concurrent], args.workers)
    finally:
        drop_netns(pool)
        for c in masq_on + masq_off:
            c.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    for with_masq, runs in conc.items():
        record_concurrent(runs, pods=args.concurrent, masq=with_masq)
    print(f"results: {RESULTS}\nrepeat: {COMMAND}")


if __name__ == "__main__":
    main()
