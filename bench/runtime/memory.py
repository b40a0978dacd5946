"""Marginal memory (PSS) per running pod of all our processes: N one-container pods
(`sleep`), the monitors' PSS summed (the container processes themselves excluded).

    .venv/bin/python -m bench.runtime.memory [-n 20] [--no-record]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.report import Series, record
from bench.runtime.run import make_rootfs
from engine.cgroups.detect import manager
from engine.runtime.api import Runtime
from engine.runtime.context import RuntimeOptions
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs, SandboxConfig
from engine.shim import protocol as P


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kpy-bench-", dir="/run") as tmp:
        rootfs = make_rootfs(Path(tmp) / "rootfs")
        (rootfs / "bin" / "sleep").symlink_to("busybox")
        cgroup_root = f"kubelet-py-bench-{int(time.time())}"
        rt = Runtime(RuntimeOptions(run_root=Path(tmp) / "run", cgroup_root=cgroup_root))
        per_pod: list[float] = []
        try:
            for i in range(args.n):
                sid = rt.run_sandbox(SandboxConfig(name=f"m{i}", namespace="bench",
                                                   uid=f"m{i}"))
                cid = rt.create_container(sid, ContainerConfig(
                    name="s", command=("/bin/sleep", "600")),
                    rootfs=Rootfs(directory=str(rootfs)), image=ImageConfig())
                rt.start_container(cid)
            time.sleep(1)
            for info in rt.list_sandboxes():
                d = rt.ctx.store.sandbox_dir(info.record.id)
                per_pod.append(pss_kib(int((d / P.PIDFILE).read_text())) / 1024)
        finally:
            for info in rt.list_sandboxes():
                rt.remove_sandbox(info.record.id)
            if manager().exists(cgroup_root):
                manager().destroy(cgroup_root)
    series = Series("monitor PSS per pod", tuple(per_pod), "MiB")
    print(f"{args.n} pods: PSS per pod p50 {series.p50:.2f} MiB, p99 {series.p99:.2f} MiB, "
          f"total {sum(per_pod):.1f} MiB")
    if not args.no_record:
        record(name="runtime-memory", title=f"PSS per running pod ({args.n} pods)",
               command=f".venv/bin/python -m bench.runtime.memory -n {args.n}",
               series=[series], ratios={"goal 2 MiB / measured p50": 2 / series.p50},
               notes="Sum over our per-pod processes (the monitor); containerd's shim was "
               "not measured in this run.")


if __name__ == "__main__":
    main()
