"""A state store holding N pods (one sandbox, one container each), written directly.

Creating 110 real pods means 110 monitors and mounts; for the unary-RPC figures only the
records matter, so this writes them through the engine's own `Store` (the same files the
runtime writes) into a temporary run root. The records look like the kubelet's (its labels
and annotations). Every sandbox's pidfile names one placeholder process whose command line
carries the monitor's module name, so `monitor_alive` takes its full path (pidfile,
/proc/<pid>/cmdline, /proc/<pid>/stat) and reports the sandboxes ready and the containers
running, as with live monitors.
"""
from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

from engine.execdriver.spec import InitSpec
from engine.runtime.spec import ContainerConfig, ImageConfig, SandboxConfig, VolumeMount
from engine.runtime.state import ContainerState, write_state
from engine.runtime.status import Status
from engine.runtime.store import ContainerRecord, SandboxRecord, Store
from engine.shim import protocol as P

IMAGE = "registry.k8s.io/e2e-test-images/busybox:1.36.1-1"


def placeholder_monitor() -> subprocess.Popen[bytes]:
    """A sleeping process whose cmdline contains `engine.shim.monitor` (see module doc),
    returned once it shows that command line (the engine keeps a monitor it saw gone)."""
    proc = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()",
                             "engine.shim.monitor-placeholder-for-bench"])
    deadline = time.monotonic() + 10
    while b"engine.shim.monitor" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the placeholder monitor did not start")
        time.sleep(0.005)
    return proc


def populate(run_root: Path, *, pods: int, containers_per_pod: int = 1,
             monitor_pid: int) -> list[str]:
    """Write `pods` ready sandboxes with running containers; returns the container IDs."""
    store = Store(run_root)
    now = time.time_ns()
    cids = []
    for i in range(pods):
        sid = secrets.token_hex(32)
        uid = secrets.token_hex(16)
        name, ns = f"bench-{i}", "bench"
        sandbox = SandboxConfig(
            name=name, namespace=ns, uid=uid, hostname=name,
            log_directory=f"/var/log/pods/{ns}_{name}_{uid}",
            labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": ns,
                    "io.kubernetes.pod.uid": uid, "app": "bench"},
            annotations={"kubernetes.io/config.seen": "2026-01-01T00:00:00Z",
                         "kubernetes.io/config.source": "api"})
        store.save_sandbox(SandboxRecord(id=sid, config=sandbox, created_at=now,
                                         cgroup_path=f"kubelet-py/{sid}", driver="native",
                                         ips=(f"10.88.{i // 250}.{i % 250 + 2}",),
                                         network_attached=True))
        (store.sandbox_dir(sid) / P.PIDFILE).write_text(str(monitor_pid))
        for j in range(containers_per_pod):
            cid = secrets.token_hex(32)
            cname = f"c{j}"
            config = ContainerConfig(
                name=cname, image=IMAGE, command=("sleep", "3600"),
                labels={"io.kubernetes.container.name": cname,
                        "io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": ns,
                        "io.kubernetes.pod.uid": uid},
                annotations={"io.kubernetes.container.hash": "1a2b3c4d",
                             "io.kubernetes.container.restartCount": "0",
                             "io.kubernetes.container.terminationMessagePath":
                                 "/dev/termination-log"},
                mounts=(VolumeMount(container_path="/var/run/secrets/kubernetes.io/"
                                    "serviceaccount", host_path=f"/var/lib/kubelet/pods/{uid}"
                                    "/volumes/token", readonly=True),),
                log_path=f"{cname}/0.log")
            rec = ContainerRecord(
                id=cid, sandbox_id=sid, config=config, image=ImageConfig(cmd=("sh",)),
                spec=InitSpec(id=cid, rootfs=str(store.container_dir(sid, cid) / "rootfs"),
                              args=("sleep", "3600")),
                log_path=f"{sandbox.log_directory}/{cname}/0.log", created_at=now)
            store.save_container(rec)
            write_state(P.state_path(store.sandbox_dir(sid), cid),
                        ContainerState(status=Status.RUNNING, pid=monitor_pid,
                                       created_at=now, started_at=now))
            cids.append(cid)
    return cids
