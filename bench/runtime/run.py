"""create + start + wait + delete of /bin/true in a fresh sandbox: native vs crun vs runc.

All figures go through the same Runtime (same sandbox, monitor, logs), so the difference
between contenders is the exec driver. `container` times the container only (the sandbox
is made fresh before each sample, untimed); `pod` adds run + remove of the sandbox;
`run_sandbox` is the sandbox's run alone (what RunPodSandbox costs without the network).

    .venv/bin/python -m bench.runtime.run [-n 20] [--no-record]

The goal (issue #4): native no slower than crun and at least twice as fast as runc, at p50
and at p99, for the container verbs. The load average before and after the run goes into
the notes: on a shared machine the figures mean little without it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.report import Series, record
from engine.cgroups.detect import manager
from engine.runtime.api import Runtime
from engine.runtime.context import RuntimeOptions
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs, SandboxConfig

HANDLERS = ("native", "crun", "runc")


def make_rootfs(root: Path) -> Path:
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "bin" / "true").symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return root


def one(rt: Runtime, handler: str, rootfs: Path, i: int) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    sid = rt.run_sandbox(SandboxConfig(name=f"b{i}", namespace="bench", uid=f"{handler}{i}",
                                       runtime_handler=handler))
    t1 = time.perf_counter()
    cid = rt.create_container(sid, ContainerConfig(name="t", command=("/bin/true",)),
                              rootfs=Rootfs(directory=str(rootfs)), image=ImageConfig())
    rt.start_container(cid)
    state = rt.wait_container(cid, timeout=30)
    rt.remove_container(cid)
    t2 = time.perf_counter()
    rt.remove_sandbox(sid)
    t3 = time.perf_counter()
    if state.exit_code != 0:
        raise SystemExit(f"{handler}: /bin/true exited {state.exit_code} ({state.reason})")
    return (t2 - t1) * 1000, (t3 - t0) * 1000, (t1 - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    # under /run (tmpfs) like the default --run-root: state writes are fsynced
    with tempfile.TemporaryDirectory(prefix="kpy-bench-", dir="/run") as tmp:
        rootfs = make_rootfs(Path(tmp) / "rootfs")
        cgroup_root = f"kubelet-py-bench-{int(time.time())}"
        rt = Runtime(RuntimeOptions(run_root=Path(tmp) / "run", cgroup_root=cgroup_root))
        samples: dict[str, tuple[list[float], list[float], list[float]]] = {
            h: ([], [], []) for h in HANDLERS}
        try:
            for h in HANDLERS:  # warm-up: page cache, first imports
                one(rt, h, rootfs, -1)
            for i in range(args.n):
                for h in HANDLERS:  # interleaved: drift on a shared machine hits all alike
                    for kept, value in zip(samples[h], one(rt, h, rootfs, i), strict=True):
                        kept.append(value)
        finally:
            for info in rt.list_sandboxes():
                rt.remove_sandbox(info.record.id)
            if manager().exists(cgroup_root):
                manager().destroy(cgroup_root)
    load_after = os.getloadavg()
    series = [Series(f"{h} container", tuple(samples[h][0]), "ms") for h in HANDLERS] + \
        [Series(f"{h} pod", tuple(samples[h][1]), "ms") for h in HANDLERS] + \
        [Series(f"{h} run_sandbox", tuple(samples[h][2]), "ms") for h in HANDLERS]
    for s in series:
        print(f"{s.label:18} p50 {s.p50:8.1f} ms   p99 {s.p99:8.1f} ms")
    by = {s.label: s for s in series}
    native = by["native container"]
    ratios = {}
    for other in ("crun", "runc"):
        ratios[f"{other} / native (container p50)"] = by[f"{other} container"].p50 / native.p50
        ratios[f"{other} / native (container p99)"] = by[f"{other} container"].p99 / native.p99
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    load = (f"load average (1/5/15 min) {' '.join(f'{x:.2f}' for x in load_before)} before, "
            f"{' '.join(f'{x:.2f}' for x in load_after)} after")
    print(load)
    if not args.no_record:
        record(name="runtime-lifecycle",
               title="create+start+wait+delete of /bin/true in a fresh sandbox",
               command=f".venv/bin/python -m bench.runtime.run -n {args.n}", series=series,
               ratios=ratios, notes="`container`: the container verbs only; `pod`: plus "
               "running and removing the sandbox (namespaces helper, monitor, cgroup); "
               "`run_sandbox`: RunPodSandbox alone (no network). Goal: "
               "crun / native >= 1 and runc / native >= 2 at p50 and p99. " + load + ".")


if __name__ == "__main__":
    main()
