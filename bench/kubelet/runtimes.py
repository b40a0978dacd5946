"""The CRI runtimes the kubelet benchmark runs on: a private containerd or engined."""
from __future__ import annotations

import contextlib
import random
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.harness import containerd
from tests.harness.engined import Engined
from tests.harness.registry import LocalRegistry


@contextlib.contextmanager
def private_containerd(root: Path, reg: LocalRegistry, *, tools: Path) -> Iterator[str]:
    instance, proc = containerd.start(root, reg, tools=tools)
    try:
        yield instance.endpoint
    finally:
        containerd.stop(instance, proc, tools=tools)


@contextlib.contextmanager
def private_engined(root: Path, reg: LocalRegistry, *, tools: Path,
                    graph_driver: str = "vfs", cni: str = "reference") -> Iterator[str]:
    """engined with its own root, socket and CNI bridge; images from the local registry.
    `cni`: "reference" = the Go bridge/host-local executables (what containerd gets in the
    benchmarks); "kpy" = our plugins, which the engine runs in-process (its default setup)."""
    bridge = f"kpy{secrets.token_hex(3)}"
    subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
    conflist = containerd.cni_conflist(bridge=bridge, subnet=subnet)
    bin_dirs = [tools]
    if cni == "kpy":
        ours = root / "kpy-cni-bin"
        subprocess.run([sys.executable, "-m", "engine.networkdriver.plugins.install",
                        "--bin-dir", str(ours), "--python", "auto"], check=True,
                       stdout=subprocess.DEVNULL)
        bin_dirs = [ours, tools]  # portmap stays the reference one
        first = conflist["plugins"][0]  # type: ignore[index]
        first["type"] = "kpy-bridge"
        first["ipam"]["type"] = "kpy-host-local"
    elif cni != "reference":
        raise ValueError(f"cni must be reference or kpy, not {cni!r}")
    with Engined.create(root, registry_hosts=reg.root / "mirrors.yaml", conflist=conflist,
                        cni_bin_dirs=bin_dirs, graph_driver=graph_driver) as daemon:
        yield daemon.endpoint
