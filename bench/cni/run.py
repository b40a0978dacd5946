"""ADD+DEL latency per pod and 200 pods concurrently: kpy-bridge/kpy-host-local vs the
reference bridge/host-local (as executables), plus our in-process path; with ipMasq and
without. DEL gets the ADD result as prevResult, as libcni (containerd, cnitool) and our
engine pass it.

Our executables run two ways: as thin shims of the resident CNI agent (plugins/agent.py,
started here as its own process, as a shim would start it), and with no agent (each exec
runs the plugin itself). The agent's CPU (its getrusage, asked over its socket) is added
to the CPU of every sample and run it serves.

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
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cni.agent import COMMAND, AgentProcess, record_shim_start
from bench.report import RESULTS, Series, record
from engine.networkdriver.plugins import bridge, install, masq, masq_nft, netlink
from engine.networkdriver.plugins.reaper import Reaper
from tests.harness.prereq import tools_bin

AGENT, NO_AGENT, REF = "kpy exec (agent)", "kpy exec (no agent)", "reference exec"


def conf(kind: str, ipam: str, name: str, bridge_name: str, data_dir: Path,
         subnet: str, *, masq: bool) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": name, "type": kind, "bridge": bridge_name,
            "isGateway": True, "ipMasq": masq, "hairpinMode": True,
            "ipam": {"type": ipam, "dataDir": str(data_dir), "subnet": subnet}}


class Contender:
    def __init__(self, label: str, kind: str, ipam: str, *, tag: str, bin_dir: Path,
                 root: Path, subnet: str, masq: bool, in_process: bool = False,
                 deferred: bool = True, backend: str = "",
                 agent: AgentProcess | None = None) -> None:
        self.label, self.kind, self.bin_dir, self.in_process = label, kind, bin_dir, in_process
        self.agent = agent
        self.environ = dict(os.environ)  # read once, as the engine's driver does
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
        env = {**self.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns,
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

    def cpu_ms(self) -> float:
        """CPU of this process and its children, plus the agent's when this one uses it
        (after its deferred deletions: a contender's CPU includes them)."""
        return cpu_ms() + (self.agent.cpu_ms() if self.agent is not None else 0.0)

    def settle(self) -> float:
        """Wait for the reaper's deferred deletions; the milliseconds waited."""
        start = time.perf_counter()
        if self.agent is not None:
            self.agent.status(settle=True)
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
    n = len(contenders)
    for i in range(pods):  # interleaved, so load changes hit every contender alike (the
        # order rotates); each ADD into a fresh netns of its own, as a pod's is: the first
        # interface moved into a netns costs the kernel more than later ones
        for j, c in enumerate(contenders[i % n:] + contenders[:i % n]):
            path = f"/run/netns/{netns[i * n + j]}"
            cpu0 = c.cpu_ms()
            t0 = time.perf_counter()
            result = c.call("ADD", path, f"lat{i}")
            t1 = time.perf_counter()
            c.call("DEL", path, f"lat{i}", result)
            t2 = time.perf_counter()
            # the deferred veth deletion: untimed, but its CPU counted, and over before the
            # next contender starts (it would slow whoever comes next)
            c.settle()
            cpu[c.label].append(c.cpu_ms() - cpu0)
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

    cpu0 = c.cpu_ms()
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        adds = list(pool.map(add, range(len(netns))))
        add_total = time.perf_counter() - start
        dels = list(pool.map(delete, range(len(netns))))
    total = time.perf_counter() - start
    addrs = [a for _, a in adds]
    leaks = c.leaks()
    return {"pods": len(netns), "workers": workers, "add_total_s": add_total,
            "total_s": total, "cpu_s": (c.cpu_ms() - cpu0) / 1000,
            "duplicates": len(addrs) - len(set(addrs)), "leaks": leaks,
            "op_ms": [t for t, _ in adds] + dels}


def concurrent_abba(contenders: list[Contender], netns: list[str],
                    workers: int) -> dict[str, dict[str, Any]]:
    """Each contender twice, in the order A B C C B A: what one run leaves the kernel doing
    (deferred frees after 200 deletions) slows the next, and the order must not decide.
    Totals are the mean of the two runs."""
    runs: dict[str, list[dict[str, Any]]] = {c.label: [] for c in contenders}
    for c in [*contenders, *reversed(contenders)]:
        runs[c.label].append(concurrent_run(c, netns, workers))
    out = {}
    for label, (a, b) in runs.items():
        out[label] = {"pods": a["pods"], "workers": workers,
                      "total_s": (a["total_s"] + b["total_s"]) / 2,
                      "add_total_s": (a["add_total_s"] + b["add_total_s"]) / 2,
                      "cpu_s": (a["cpu_s"] + b["cpu_s"]) / 2,
                      "runs_s": [a["total_s"], b["total_s"]],
                      "duplicates": a["duplicates"] + b["duplicates"],
                      "leaks": {k: a["leaks"][k] + b["leaks"][k] for k in a["leaks"]},
                      "op_ms": a["op_ms"] + b["op_ms"]}
    return out


def contenders_for(bin_dir: Path, root: Path, *, masq: bool, agent_bin: Path,
                   served_by: AgentProcess) -> list[Contender]:
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
        Contender(AGENT, "kpy-bridge", "kpy-host-local", tag=f"kag{m}", bin_dir=agent_bin,
                  root=root, subnet=f"10.21{third}.0.0/16", masq=masq, agent=served_by),
        Contender(NO_AGENT, "kpy-bridge", "kpy-host-local", tag=f"kpy{m}", bin_dir=bin_dir,
                  root=root, subnet=f"10.25{third}.0.0/16", masq=masq),
        Contender(REF, "bridge", "host-local", tag=f"ref{m}", bin_dir=bin_dir,
                  root=root, subnet=f"10.24{third}.0.0/16", masq=masq),
        # a pod's contenders share its netns: latency() settles each one's deferred veth
        # deletion before the next one starts
        Contender("kpy in-process, sync veth delete", "kpy-bridge", "kpy-host-local",
                  tag=f"kis{m}", bin_dir=bin_dir, root=root, subnet=f"10.22{third}.0.0/16",
                  masq=masq, in_process=True, deferred=False),
        Contender("kpy in-process", "kpy-bridge", "kpy-host-local", tag=f"kip{m}",
                  bin_dir=bin_dir, root=root, subnet=f"10.23{third}.0.0/16", masq=masq,
                  in_process=True), *iptables]


def exec_ratios(by: dict[str, Series]) -> dict[str, float]:
    out = {}
    for ours in (AGENT, NO_AGENT):
        out[f"{ours} p50 / reference p50"] = by[ours].p50 / by[REF].p50
        out[f"{ours} p99 / reference p99"] = by[ours].p99 / by[REF].p99
        out[f"{ours} CPU p50 / reference CPU p50"] = (by[f"{ours} (CPU)"].p50
                                                      / by[f"{REF} (CPU)"].p50)
    return out


def record_latency(contenders: list[Contender], pods: int, pool: list[str], *,
                   masq: bool, python: str, served_by: AgentProcess) -> list[Series]:
    load0 = os.getloadavg()[0]
    lat, cpu, split = latency(contenders, pods, pool)
    by = {s.label: s for s in lat + cpu}
    mode = "ipMasq" if masq else "no ipMasq"
    rss = served_by.status()
    record(name="cni-add-del" if masq else "cni-add-del-nomasq",
           title=f"CNI ADD+DEL per pod (bridge + host-local IPAM, {mode})",
           command=COMMAND, series=lat + cpu,
           ratios={**exec_ratios(by),
                   "kpy in-process p50 (ms)": by["kpy in-process"].p50,
                   "kpy in-process CPU p50 (ms)": by["kpy in-process (CPU)"].p50,
                   "agent RSS (MiB)": rss["rss_kib"] / 1024},
           notes=f"One pod at a time; ADD then DEL (with prevResult), both timed, isGateway+"
                 f"hairpin, {mode}; each contender's ADD into a netns of its own (fresh in the"
                 " run without ipMasq; the ipMasq run reuses them), contenders interleaved in"
                 " a rotating order. "
                 + "; ".join(f"{label}: {text}" for label, text in split.items())
                 + f". '{AGENT}': our executables as thin shims (python -IS, no import beyond"
                 " built-in modules) handing each invocation to the resident CNI agent over"
                 " its unix socket (with an fd of the netns); the agent's CPU (getrusage,"
                 " all its threads, its deferred veth deletions included) is added to each"
                 f" sample; its RSS {rss['rss_kib'] / 1024:.1f} MiB (max"
                 f" {rss['max_rss_kib'] / 1024:.1f} MiB). '{NO_AGENT}': each exec runs the"
                 " plugin itself (what a shim does when no agent can serve it)."
                 f" kpy executables run on {python} (install --python auto). In-process"
                 " DEL (as the engine runs it) leaves the veth deletion (the kernel's RCU"
                 " barrier, 15-25 ms of sleep) to a reaper thread once the pod's bridge"
                 " port is disabled and its address and masquerade rules are released; 'sync veth"
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
        ratios={**{f"{ours} total / reference total": runs[ours]["total_s"]
                   / runs[REF]["total_s"] for ours in (AGENT, NO_AGENT)},
                **{f"{ours} CPU / reference CPU": runs[ours]["cpu_s"] / runs[REF]["cpu_s"]
                   for ours in (AGENT, NO_AGENT)}},
        notes="Two runs per contender in the order A B C C B A; totals are their mean. CPU:"
        " this process, its children and (for the agent) the agent's, per run.\n\n"
        + "\n".join(
            f"- {label}: total {v['total_s']:.1f} s (runs {v['runs_s'][0]:.1f} s and "
            f"{v['runs_s'][1]:.1f} s; ADDs {v['add_total_s']:.1f} s), CPU {v['cpu_s']:.1f} s, "
            f"duplicates {v['duplicates']}, leaks after DEL {v['leaks']}"
            for label, v in runs.items())
        + f"\n\nLoad average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")
    for label, v in runs.items():
        print(f"{mode:9s} {label:20s} {v['pods']} pods: total {v['total_s']:.1f} s "
              f"(runs {v['runs_s'][0]:.1f} s, {v['runs_s'][1]:.1f} s), CPU {v['cpu_s']:.1f} s, "
              f"duplicates {v['duplicates']}, leaks {v['leaks']}")


def install_plugins(root: Path, ref_bin: Path) -> tuple[Path, Path, str, AgentProcess]:
    """Under ``root``: ``bin`` (our executables, each running its plugin, and links to the
    reference bridge/host-local of ``ref_bin``), ``bin-agent`` (ours as shims of an agent)
    and that agent, started. (bin, bin-agent, the executables' python, the agent)"""
    bin_dir, agent_bin = root / "bin", root / "bin-agent"
    python = install.fastest_python()
    install.install(bin_dir, python=python)
    sock = root / "agent" / "agent.sock"
    install.install(agent_bin, python=python, agent_socket=str(sock))
    for name in ("bridge", "host-local"):
        if not (ref_bin / name).exists():
            raise SystemExit(f"reference plugin {name} missing from {ref_bin}: run `make tools`")
        os.symlink(ref_bin / name, bin_dir / name)
    return bin_dir, agent_bin, python, AgentProcess(sock, python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=40, help="sequential ADD+DEL samples")
    parser.add_argument("--concurrent", type=int, default=200, help="0: skip that part")
    parser.add_argument("--workers", type=int, default=200, help="ADDs in flight at once")
    parser.add_argument("--only-nomasq", action="store_true",
                        help="only the runs without ipMasq (quicker)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench-cni needs root (netns, bridges, iptables)")
    ref_bin = tools_bin()
    root = Path(tempfile.mkdtemp(prefix="kpy-bench-cni-"))
    bin_dir, agent_bin, python, served_by = install_plugins(root, ref_bin)
    masq_on = contenders_for(bin_dir, root, masq=True, agent_bin=agent_bin,
                             served_by=served_by)
    masq_off = contenders_for(bin_dir, root, masq=False, agent_bin=agent_bin,
                              served_by=served_by)
    pool: list[str] = []
    conc: dict[bool, dict[str, dict[str, Any]]] = {}
    try:
        most = max(len(masq_on), len(masq_off))
        pool = netns_pool(max(args.pods * most, args.concurrent), f"kpyb{os.getpid() % 10000}-")
        record_shim_start(agent_bin, served_by, python=python, runs=args.pods)
        record_latency(masq_off, args.pods, pool, masq=False, python=python,
                       served_by=served_by)
        if not args.only_nomasq:
            record_latency(masq_on, args.pods, pool, masq=True, python=python,
                           served_by=served_by)
        if args.concurrent:
            for with_masq, contenders in ((True, masq_on), (False, masq_off)):
                if with_masq and args.only_nomasq:
                    continue
                conc[with_masq] = concurrent_abba(contenders[:3], pool[:args.concurrent],
                                                  args.workers)
        final = served_by.status()
        print(f"agent: pid {final['pid']}, {final['served']} requests, CPU "
              f"{final['cpu_s']:.1f} s, RSS {final['rss_kib'] / 1024:.1f} MiB (max "
              f"{final['max_rss_kib'] / 1024:.1f} MiB)", file=sys.stderr)
    finally:
        drop_netns(pool)
        for c in masq_on + masq_off:
            c.cleanup()
        served_by.stop()
        shutil.rmtree(root, ignore_errors=True)
    for with_masq, runs in conc.items():
        record_concurrent(runs, pods=args.concurrent, masq=with_masq)
    print(f"results: {RESULTS}\nrepeat: {COMMAND}")


if __name__ == "__main__":
    main()
