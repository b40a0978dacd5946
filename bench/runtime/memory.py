"""Memory (PSS) per running pod of the per-pod runtime processes, ours beside containerd's.

Ours: the monitor zygote plus every monitor process (forks of it, each hosting up to K pods:
--pods-per-monitor, RuntimeOptions.pods_per_monitor). containerd's: its runc v2 shims. Both
sums come from /proc/<pid>/smaps_rollup; the containers themselves (our sleep, containerd's
pause and sleep) and the daemons are left out. Each contender runs N one-container pods
(`sleep`) at each count in `--pods`, added up one count after the other; a pod's sample is
its monitor process's (shim's) PSS divided among the pods that process hosts, plus the
zygote's PSS shared out over N. containerd's pods are made through its own CRI with host
networking (bench.cri.peer).

    .venv/bin/python -m bench.runtime.memory [--pods 20,110] [--peer containerd|none]
                                            [--pods-per-monitor K] [--no-record]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.report import Series, record
from bench.runtime.run import make_rootfs
from engine.cgroups.detect import manager
from engine.runtime.api import Runtime
from engine.runtime.context import RuntimeOptions
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs, SandboxConfig
from engine.shim import protocol as P
from engine.shim.spawner import spawner_for

Samples = dict[int, tuple[float, ...]]  # pod count -> MiB per pod
LOADS: list[str] = []  # the load average at each measurement, for the notes


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def per_pod(pods: list[int], shared: list[int]) -> tuple[float, ...]:
    """Per pod (MiB): its process's PSS divided among the pods that process serves, plus the
    shared processes' PSS divided among all the pods. `pods`: each pod's process pid."""
    extra = sum(pss_kib(p) for p in shared) / max(len(pods), 1)
    pss = {p: pss_kib(p) for p in set(pods)}
    return tuple((pss[p] / pods.count(p) + extra) / 1024 for p in pods)


def measure_ours(counts: list[int], *, pods_per_monitor: int) -> Samples:
    out: Samples = {}
    with tempfile.TemporaryDirectory(prefix="kpy-bench-", dir="/run") as tmp:
        rootfs = make_rootfs(Path(tmp) / "rootfs")
        (rootfs / "bin" / "sleep").symlink_to("busybox")
        cgroup_root = f"kubelet-py-bench-{int(time.time())}"
        rt = Runtime(RuntimeOptions(run_root=Path(tmp) / "run", cgroup_root=cgroup_root,
                                    pods_per_monitor=pods_per_monitor))
        made = 0
        try:
            for count in counts:
                for i in range(made, count):
                    sid = rt.run_sandbox(SandboxConfig(name=f"m{i}", namespace="bench",
                                                       uid=f"m{i}"))
                    cid = rt.create_container(sid, ContainerConfig(
                        name="s", command=("/bin/sleep", "3600")),
                        rootfs=Rootfs(directory=str(rootfs)), image=ImageConfig())
                    rt.start_container(cid)
                made = count
                time.sleep(2)
                monitors = [int((rt.ctx.store.sandbox_dir(sid) / P.PIDFILE).read_text())
                            for sid in rt.ctx.store.sandbox_ids()]
                zygote = spawner_for(rt.ctx.options.run_root, owner=rt.ctx).pid
                out[count] = per_pod(monitors, [zygote])
                report("engined", count, out[count])
        finally:
            for info in rt.list_sandboxes():
                rt.remove_sandbox(info.record.id)
            if manager().exists(cgroup_root):
                manager().destroy(cgroup_root)
    return out


def shims_of(socket: str) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and socket.encode() in argv:
            yield int(entry.name)


def measure_containerd(counts: list[int]) -> Samples:
    from bench.cri import peer
    from tests.harness.prereq import tools_bin

    out: Samples = {}
    with tempfile.TemporaryDirectory(prefix="kpy-bench-mem-") as tmp, \
            peer.private_containerd(Path(tmp), tools=tools_bin()) as endpoint:
        made = 0
        for count in counts:
            peer.make_pods(endpoint, pods=count - made, containers_per_pod=1)
            made = count
            time.sleep(2)
            shims = list(shims_of(endpoint.removeprefix("unix://")))
            if len(shims) != count:
                raise SystemExit(f"containerd: {len(shims)} shims for {count} pods")
            out[count] = per_pod(shims, [])
            report("containerd", count, out[count])
    return out


def report(who: str, count: int, samples: tuple[float, ...]) -> None:
    load = os.getloadavg()[0]
    LOADS.append(f"{who} {count} pods: {load:.1f}")
    print(f"{who:10} {count:4} pods: PSS per pod p50 {sorted(samples)[len(samples) // 2]:.2f}"
          f" MiB, total {sum(samples):.1f} MiB (load average {load:.2f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", default="20,110", help="pod counts, ascending")
    parser.add_argument("--peer", choices=("containerd", "none"), default="containerd")
    parser.add_argument("--pods-per-monitor", type=int,
                        default=RuntimeOptions(run_root=Path("/")).pods_per_monitor)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    counts = sorted({int(c) for c in args.pods.split(",")})
    ppm = args.pods_per_monitor
    runs: dict[str, Callable[[list[int]], Samples]] = {
        "engined": lambda c: measure_ours(c, pods_per_monitor=ppm)}
    if args.peer == "containerd":
        runs["containerd"] = measure_containerd
    results = {who: run(counts) for who, run in runs.items()}
    series = [Series(f"{who} {n} pods", results[who][n], "MiB")
              for n in counts for who in results]
    ratios: dict[str, float] = {}
    for who, by_count in results.items():
        for n in counts:
            ratios[f"{who}: total / {n} pods (MiB)"] = sum(by_count[n]) / n
        if len(counts) > 1:
            lo, hi = counts[0], counts[-1]
            ratios[f"{who}: marginal MiB per pod, {lo} -> {hi} pods"] = \
                (sum(by_count[hi]) - sum(by_count[lo])) / (hi - lo)
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    if not args.no_record:
        record(name="runtime-memory", title=f"PSS per running pod ({args.pods} pods)",
               command=f".venv/bin/python -m bench.runtime.memory --pods {args.pods} "
               f"--peer {args.peer} --pods-per-monitor {ppm}", series=series, ratios=ratios,
               notes=f"engined: the monitor zygote plus its forked monitor processes, each "
               f"hosting up to {ppm} pods (pods per monitor = {ppm}); a pod's sample is its "
               "monitor process's PSS divided among the pods it hosts plus the zygote's "
               "shared out over the pods. containerd: its containerd-shim-runc-v2 "
               "processes (one per pod). Containers and daemons excluded. Goal: at most "
               "2 MiB per pod at 110 pods (one interpreter per pod: 9.43 MiB at 20 pods; "
               "one zygote fork per pod: 3.41 MiB at 110). "
               f"1-minute load average at each measurement: {'; '.join(LOADS)}.")


if __name__ == "__main__":
    main()
