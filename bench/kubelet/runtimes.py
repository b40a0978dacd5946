"""The CRI runtimes the kubelet benchmark runs on: a private containerd or engined."""
from __future__ import annotations

import contextlib
import random
import secrets
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
                    graph_driver: str = "vfs") -> Iterator[str]:
    """engined with its own root, socket and CNI bridge; images from the local registry."""
    bridge = f"kpy{secrets.token_hex(3)}"
    subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
    with Engined.create(root, registry_hosts=reg.root / "mirrors.yaml",
                        conflist=containerd.cni_conflist(bridge=bridge, subnet=subnet),
                        cni_bin_dirs=[tools], graph_driver=graph_driver) as daemon:
        yield daemon.endpoint
