"""Pull + unpack of a >= 100 MiB multi-layer image from the local registry: ours (overlay)
against `skopeo copy` + `umoci unpack` and containerd (`ctr images pull`, overlayfs), in one
run; plus our unpack alone on one core, and a container rootfs (prepare + overlay mount) p50.

Run as root: `make bench-pull` (BENCH_ARGS="--size-mb 128 --runs 3"). Uses the shared local
registry (`make registry`), and only temporary directories it removes.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.report import Series, record
from engine.graph.layerstream import LayerReader
from engine.graphdriver.mount import mount_all, unmount
from engine.graphdriver.unpack import Whiteouts, apply_layer
from engine.images import ImageService
from engine.registry.hosts import parse_hosts
from tests.harness import registry as harness
from tests.harness.prereq import tools_bin

COMMAND = "make bench-pull"
MiB = 1 << 20


@contextlib.contextmanager
def scratch(tag: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"kpy-bench-{tag}-", dir="/var/tmp"))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-R", "-q", str(path)], check=False, capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


def ours(ref: str, host: str) -> tuple[float, int, Path | None]:
    with scratch("ours") as root:
        svc = ImageService(root, driver="overlay", hosts=parse_hosts({host: {"insecure": True}}))
        t0 = time.perf_counter()
        svc.pull(ref)
        took = time.perf_counter() - t0
        unpacked = sum(layer.size for layer in svc.layers())
        svc.close()
    return took, unpacked, None


def unpack_only(ref: str, host: str) -> tuple[float, float, int]:
    """Our unpack of the already-downloaded blobs, one layer after another (one core)."""
    with scratch("unpack") as root:
        svc = ImageService(root, driver="overlay", hosts=parse_hosts({host: {"insecure": True}}))
        img = svc.pull(ref)
        total = 0
        took = cpu = 0.0
        for i, lr in enumerate(img.layers):
            target = root / f"u{i}"
            target.mkdir()
            with svc.graph.content.open(lr.blob) as raw:
                t0, c0 = time.perf_counter(), time.process_time()
                reader = LayerReader(raw)
                stats = apply_layer(str(target), reader, whiteouts=Whiteouts.OVERLAY)
                reader.drain()
                took += time.perf_counter() - t0
                cpu += time.process_time() - c0
            total += stats.bytes
        svc.close()
    return took, cpu, total


def skopeo_umoci(ref: str) -> float:
    with scratch("skopeo") as root:
        t0 = time.perf_counter()
        subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                        f"docker://{ref}", f"oci:{root}/layout:bench"], check=True)
        subprocess.run(["umoci", "unpack", "--image", f"{root}/layout:bench",
                        str(root / "bundle")], check=True, capture_output=True)
        return time.perf_counter() - t0


def containerd(ref: str) -> float | None:
    bin_dir = tools_bin()
    if not (bin_dir / "containerd").exists() or not (bin_dir / "ctr").exists():
        return None
    with scratch("containerd") as root:
        sock = root / "c.sock"
        (root / "config.toml").write_text(
            f'version = 3\nroot = "{root}/root"\nstate = "{root}/state"\n'
            f'[grpc]\n  address = "{sock}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"]\n')
        log = (root / "containerd.log").open("w")
        proc = subprocess.Popen([str(bin_dir / "containerd"), "--config",
                                 str(root / "config.toml")], stdout=log, stderr=log)
        try:
            for _ in range(100):
                if sock.exists():
                    break
                time.sleep(0.1)
            t0 = time.perf_counter()
            subprocess.run([str(bin_dir / "ctr"), "-a", str(sock), "-n", "bench", "images",
                            "pull", "--plain-http", ref], check=True, capture_output=True)
            return time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            log.close()


def rootfs_p50(ref: str, host: str, n: int) -> list[float]:
    with scratch("rootfs") as root:
        svc = ImageService(root / "store", driver="overlay",
                           hosts=parse_hosts({host: {"insecure": True}}))
        img = svc.pull(ref)
        samples = []
        for i in range(n):
            target = root / f"m{i}"
            target.mkdir()
            t0 = time.perf_counter()
            mount_all(svc.create_rootfs(f"c{i}", img.id), str(target))
            samples.append((time.perf_counter() - t0) * 1000)
            unmount(str(target))
            svc.remove_rootfs(f"c{i}")
        svc.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mounts", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench-pull needs root (overlay mounts)")
    reg = harness.up()
    ref = harness.push_large(args.size_mb)
    ours_s, unpack_s, cpu_s, skopeo_s, ctr_s = [], [], [], [], []
    unpacked = 0
    for _ in range(args.runs):
        took, unpacked, _ = ours(ref, reg.host)
        ours_s.append(unpacked / MiB / took)
        took, cpu, total = unpack_only(ref, reg.host)
        unpack_s.append(total / MiB / took)
        cpu_s.append(total / MiB / cpu)
        skopeo_s.append(unpacked / MiB / skopeo_umoci(ref))
        c = containerd(ref)
        if c is not None:
            ctr_s.append(unpacked / MiB / c)
    series = [Series("ours pull+unpack", tuple(ours_s), "MiB/s"),
              Series("ours unpack only (1 thread)", tuple(unpack_s), "MiB/s"),
              Series("ours unpack per CPU-second", tuple(cpu_s), "MiB/cpu-s"),
              Series("skopeo copy + umoci unpack", tuple(skopeo_s), "MiB/s")]
    if ctr_s:
        series.append(Series("containerd ctr pull", tuple(ctr_s), "MiB/s"))
    record(name="pull-unpack", title=f"Pull + unpack of a {args.size_mb} MiB, 8-layer image "
           "(MiB/s of unpacked files, higher is better)", command=COMMAND, series=series,
           ratios={"ours/skopeo+umoci": series[0].p50 / series[3].p50,
                   **({"ours/containerd": series[0].p50 / series[4].p50} if ctr_s else {})},
           notes=f"{unpacked / MiB:.0f} MiB of files; registry on loopback; 2 cores shared "
           "with other jobs, so wall-clock figures move with the machine's load; the "
           "per-CPU-second figure (user+sys time of our process) is the steadier one.")
    mounts = rootfs_p50(ref, reg.host, args.mounts)
    record(name="rootfs-mount", title="Container rootfs: prepare + overlay mount (ms)",
           command=COMMAND, series=[Series("ours overlay", tuple(mounts), "ms")],
           ratios={}, notes="Goal: p50 < 5 ms.")
    for s in series:
        print(f"{s.label}: p50 {s.p50:.1f} {s.unit}")
    print(f"rootfs prepare+mount p50 {sorted(mounts)[len(mounts) // 2]:.2f} ms")


if __name__ == "__main__":
    main()
