"""The CRI runtimes the kubelet benchmark runs on: a private containerd or engined."""
from __future__ import annotations

import contextlib
import json
import random
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.harness import containerd
from tests.harness.registry import LocalRegistry


@contextlib.contextmanager
def private_containerd(root: Path, reg: LocalRegistry, *, tools: Path) -> Iterator[str]:
    instance, proc = containerd.start(root, reg, tools=tools)
    try:
        yield instance.endpoint
    finally:
        containerd.stop(instance, proc, tools=tools)


@contextlib.contextmanager
def private_engined(root: Path, reg: LocalRegistry, *, tools: Path) -> Iterator[str]:
    """engined with its own root, socket and CNI bridge; images from the local registry."""
    bridge = f"kpy{secrets.token_hex(3)}"
    subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
    (root / "net.d").mkdir(parents=True)
    (root / "net.d" / "10-kubelet-py.conflist").write_text(
        json.dumps(containerd.cni_conflist(bridge=bridge, subnet=subnet)))
    sock = Path(f"/run/kubelet-py-test-{secrets.token_hex(4)}/engine.sock")
    sock.parent.mkdir()
    log = (root / "engined.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cri.daemon", "--listen", f"unix://{sock}",
         "--root", str(root / "root"), "--run-root", str(root / "run"),
         "--cni-conf-dir", str(root / "net.d"), "--cni-bin-dir", str(tools),
         "--registry-hosts", str(reg.root / "mirrors.yaml"), "--graph-driver", "vfs"],
        stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"engined did not start; see {root / 'engined.log'}")
            time.sleep(0.1)
        yield f"unix://{sock}"
    finally:
        remove_all_pods(tools, f"unix://{sock}")
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        shutil.rmtree(sock.parent, ignore_errors=True)


def remove_all_pods(tools: Path, endpoint: str) -> None:
    """Stop and remove every pod sandbox (its processes and network) through the CRI."""
    def crictl(*args: str) -> str:
        return subprocess.run([str(tools / "crictl"), "--runtime-endpoint", endpoint,
                               "--timeout", "60s", *args], capture_output=True, text=True,
                              check=False).stdout

    for pod in crictl("pods", "-q").split():
        crictl("stopp", pod)
        crictl("rmp", "-f", pod)
