"""ADD+DEL per pod on a busy node: the same measurement as bench/cni/run.py, with ``--attached``
pods (110: kubelet's default maxPods) left attached to each contender's network meanwhile.

What a node's pod count costs per ADD+DEL: host-local (ours and the reference) reads every
reservation file of the network on ADD (the duplicate check) and on DEL (release by
container ID); masquerade rules grow with the pods (the reference: iptables chains per pod;
ours: an nftables jump per pod address in the base chain, deleted by handle in-process); the
bridge has that many ports. Contenders: the reference executables, ours through the agent,
ours in-process (as engined runs them); with ipMasq, interleaved per pod as in run.py.

Run as root: `make bench-cni-attached` (BENCH_ARGS="--attached 110 --pods 30").
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench.cni.run import (
    AGENT,
    REF,
    Contender,
    drop_netns,
    install_plugins,
    latency,
    netns_pool,
)
from bench.report import record
from tests.harness.prereq import tools_bin

COMMAND = "make bench-cni-attached"
IN_PROCESS = "kpy in-process"


def attach(contenders: list[Contender], count: int,
           netns: list[str]) -> list[tuple[Contender, str, str, dict[str, object]]]:
    """``count`` attachments per contender, each in a netns of its own, left in place."""
    held = []
    for j, c in enumerate(contenders):
        for i in range(count):
            path, cid = f"/run/netns/{netns[j * count + i]}", f"held{i}"
            result = c.call("ADD", path, cid)
            assert result is not None
            held.append((c, path, cid, result))
        c.settle()
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--attached", type=int, default=110, help="pods left attached")
    parser.add_argument("--pods", type=int, default=30, help="ADD+DEL samples")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench-cni-attached needs root (netns, bridges, nftables)")
    ref_bin = tools_bin()
    root = Path(tempfile.mkdtemp(prefix="kpy-bench-cni-attached-"))
    bin_dir, agent_bin, _, served_by = install_plugins(root, ref_bin)
    contenders = [
        Contender(REF, "bridge", "host-local", tag="refA", bin_dir=bin_dir, root=root,
                  subnet="10.205.0.0/16", masq=True),
        Contender(AGENT, "kpy-bridge", "kpy-host-local", tag="kagA", bin_dir=agent_bin,
                  root=root, subnet="10.206.0.0/16", masq=True, agent=served_by),
        Contender(IN_PROCESS, "kpy-bridge", "kpy-host-local", tag="kipA", bin_dir=bin_dir,
                  root=root, subnet="10.207.0.0/16", masq=True, in_process=True)]
    n = len(contenders)
    tag = os.getpid() % 10000
    held_ns = netns_pool(args.attached * n, f"kpyh{tag}-")
    pool = netns_pool(args.pods * n, f"kpyl{tag}-")
    held: list[tuple[Contender, str, str, dict[str, object]]] = []
    try:
        held = attach(contenders, args.attached, held_ns)
        load0 = os.getloadavg()[0]
        lat, cpu, split = latency(contenders, args.pods, pool)
        load1 = os.getloadavg()[0]
    finally:
        for c, path, cid, result in held:
            c.call("DEL", path, cid, result)
        for c in contenders:
            c.cleanup()
        served_by.stop()
        drop_netns(held_ns + pool)
        shutil.rmtree(root, ignore_errors=True)
    by = {s.label: s for s in lat + cpu}
    record(name="cni-add-del-attached",
           title=f"CNI ADD+DEL per pod with {args.attached} pods attached (ipMasq)",
           command=COMMAND, series=lat + cpu,
           ratios={f"{AGENT} p50 / reference p50": by[AGENT].p50 / by[REF].p50,
                   f"{AGENT} p99 / reference p99": by[AGENT].p99 / by[REF].p99,
                   f"{IN_PROCESS} p50 (ms)": by[IN_PROCESS].p50,
                   f"{IN_PROCESS} p99 (ms)": by[IN_PROCESS].p99},
           notes=f"{args.attached} pods attached to each contender's network (its own bridge,"
                 " data dir and masquerade rules) for the whole run; then one pod at a time,"
                 " ADD then DEL with prevResult, isGateway+hairpin+ipMasq, contenders"
                 " interleaved in a rotating order, each ADD into a fresh netns. "
                 + "; ".join(f"{label}: {text}" for label, text in split.items())
                 + f". Load average {load0:.1f} at the start, {load1:.1f} at the end, on"
                 f" {os.cpu_count()} cores.")
    for s in lat + cpu:
        print(f"{s.label:28s} ADD+DEL p50 {s.p50:7.1f} ms  p99 {s.p99:7.1f} ms", file=sys.stderr)


if __name__ == "__main__":
    main()
