"""containerd for tests: a private instance (own root, state, socket, CNI bridge and subnet)
whose registry mirrors point only at the local registry harness.

Nothing falls back to the internet: each mirrored upstream host's `hosts.toml` names the
local registry as its *server*, not just as a mirror in front of the real one.
"""
from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import images
from tests.harness.prereq import need_binary, need_root, need_tool
from tests.harness.registry import LocalRegistry

SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"


@dataclass(frozen=True)
class Containerd:
    endpoint: str
    """`unix:///...`: what --container-runtime-endpoint takes."""
    root: Path
    bridge: str
    subnet: str
    log: Path

    @property
    def socket(self) -> Path:
        return Path(self.endpoint.removeprefix("unix://"))


def hosts_toml(registry_host: str) -> str:
    return (f'server = "http://{registry_host}"\n\n[host."http://{registry_host}"]\n'
            '  capabilities = ["pull", "resolve"]\n  skip_verify = true\n')


def cni_conflist(*, bridge: str, subnet: str) -> dict[str, object]:
    return {"cniVersion": "1.0.0", "name": f"kubelet-py-{bridge}", "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
         "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ]}


CAP_SYS_RESOURCE = 24


def can_lower_oom_score() -> bool:
    """Lowering oom_score_adj (the pause container asks for -998) needs CAP_SYS_RESOURCE."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


def config_toml(*, root: Path, socket: Path, cni_bin: Path, cni_conf: Path, certs: Path,
                runc: str) -> str:
    images_plugin = 'plugins."io.containerd.cri.v1.images"'
    runtime_plugin = 'plugins."io.containerd.cri.v1.runtime"'
    runc_table = f"{runtime_plugin}.containerd.runtimes.runc"
    disabled = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri",
                "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs",
                "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
    return f"""version = 3
root = "{root}/root"
state = "{root}/state"
disabled_plugins = {json.dumps(disabled)}

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[{images_plugin}]
  snapshotter = "overlayfs"
  [{images_plugin}.pinned_images]
    sandbox = "{SANDBOX_IMAGE}"
  [{images_plugin}.registry]
    config_path = "{certs}"

[{runtime_plugin}]
  restrict_oom_score_adj = {"false" if can_lower_oom_score() else "true"}
  [{runtime_plugin}.containerd]
    default_runtime_name = "runc"
  [{runc_table}]
    runtime_type = "io.containerd.runc.v2"
    [{runc_table}.options]
      BinaryName = "{runc}"
      SystemdCgroup = false
  [{runtime_plugin}.cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{cni_conf}"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def start(directory: Path, registry: LocalRegistry, *, tools: Path) -> tuple[
        Containerd, subprocess.Popen[bytes]]:
    runc = need_binary("runc", "apt-get install runc")
    bridge = f"kpy{secrets.token_hex(3)}"
    subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
    certs = directory / "certs.d"
    for upstream in images.MIRROR_HOSTS:
        (certs / upstream).mkdir(parents=True, exist_ok=True)
        (certs / upstream / "hosts.toml").write_text(hosts_toml(registry.host))
    cni_conf = directory / "net.d"
    cni_conf.mkdir(parents=True, exist_ok=True)
    (cni_conf / "10-kubelet-py.conflist").write_text(
        json.dumps(cni_conflist(bridge=bridge, subnet=subnet), indent=2))
    socket = Path(f"/run/kubelet-py-test-{secrets.token_hex(4)}/containerd.sock")
    socket.parent.mkdir(parents=True)
    config = directory / "config.toml"
    config.write_text(config_toml(root=directory, socket=socket, cni_bin=tools,
                                  cni_conf=cni_conf, certs=certs, runc=runc))
    log = directory / "containerd.log"
    env = {**os.environ, "PATH": f"{tools}:{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([str(tools / "containerd"), "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)
    instance = Containerd(endpoint=f"unix://{socket}", root=directory, bridge=bridge,
                          subnet=subnet, log=log)
    try:
        wait_ready(instance, proc, tools=tools)
    except AssertionError:
        stop(instance, proc)
        raise
    return instance, proc


def wait_ready(instance: Containerd, proc: subprocess.Popen[bytes], *, tools: Path,
               timeout: float = 60) -> None:
    """Until its CRI answers: the socket exists a while before the CRI plugin is
    initialized ("server is not initialized yet")."""
    deadline = time.monotonic() + timeout
    while True:
        if instance.socket.exists() and _crictl(tools, instance, "info").returncode == 0:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"containerd did not start within {timeout:.0f} s:\n"
                                 f"{instance.log.read_text()[-3000:]}")
        time.sleep(0.1)


def _crictl(tools: Path, instance: Containerd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools / "crictl"), "--runtime-endpoint", instance.endpoint,
                           "--timeout", "30s", *args], capture_output=True, text=True,
                          check=False)


def stop(instance: Containerd, proc: subprocess.Popen[bytes], *,
         tools: Path | None = None) -> None:
    """Remove every pod it runs (tearing down their networks), stop it, clean up."""
    if tools is not None and proc.poll() is None:
        pods = _crictl(tools, instance, "pods", "-q").stdout.split()
        for pod in pods:
            _crictl(tools, instance, "stopp", pod)
            _crictl(tools, instance, "rmp", "-f", pod)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    subprocess.run(["ip", "link", "del", instance.bridge], capture_output=True, check=False)
    subprocess.run(["umount", "-R", str(instance.root / "state")], capture_output=True,
                   check=False)
    shutil.rmtree(instance.socket.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def containerd(local_registry: LocalRegistry,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """A private containerd with the local registry as its only source of images."""
    need_root()
    tools = need_tool("containerd").parent
    need_tool("containerd-shim-runc-v2")
    need_tool("bridge")
    need_tool("host-local")
    instance, proc = start(tmp_path_factory.mktemp("containerd"), local_registry,
                           tools=tools)
    try:
        yield instance
    finally:
        stop(instance, proc, tools=tools)
