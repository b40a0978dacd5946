"""A monitor process: hosts the monitors of up to K pods (engine.shim.pod.Pod), forked by
engine.shim.monitor_zygote. K is RuntimeOptions.pods_per_monitor.

Why K pods per process. Each pod still has everything of its own: <dir>/monitor.sock,
<dir>/monitor.pid, its containers, their logs and sessions, a shutdown that ends that pod
only; the runtime and its clients cannot tell a shared process from a private one. What
the pods share is the process: the selector loop, SIGCHLD and reaping (one pid -> (pod,
container) map), the child-subreaper role. containerd already groups a pod's containers in
one shim; we go one step further, for memory: a process costs ~0.8 MiB private at the fork
(CPython 3.11 writes the reference count of every object it touches, so each page a
process touches is copied) and ~2.1 MiB once it serves, while one more pod in an existing
process costs only that pod's own objects. A process per pod cannot meet the issue's 2 MiB
per pod; K pods per process divide the fixed part by K. PSS per pod at 110 one-container
pods, zygote included (bench.runtime.memory, 2 cores, load ~5): K=1 3.48 MiB, 2 1.83,
4 1.04, 8 0.60, 16 0.37; containerd's shims 4.35 (docs/benchmarks.md, runtime-memory).

The price is the blast radius, bounded by K: a monitor process that crashes or is killed
takes all its pods with it. Its native containers die with it (PDEATHSIG, as with one pod
per process); runc/crun containers are killed through their cgroups when the runtime
notices (status, recover), and every container of every hosted pod is reported exited with
reason MonitorDied. A pod's hung operation (a slow container start) also delays the other
pods of its process. K=1 is one process per pod (the smallest blast radius); the default,
8, keeps a crash to 8 pods with most of the per-process cost shared (4 would still meet
the goal; 16 saves only 0.23 MiB more per pod for twice the blast radius).

Who joins whom: engine.shim.spawner asks a process it started (or adopted into) and that
still has room to adopt a new sandbox dir ({"op": "adopt"} on any of its pods' sockets);
the process itself enforces K. Processes from before an engined restart are never joined:
they may run older code (an upgrade), and new pods must run the current one; they end as
their pods go. A process exits when its last pod is gone; it takes no new pod once it has
hosted K (see op_adopt), so under pod churn processes drain and end instead of living for
ever, at the price of some partly used processes.

Being small and single-threaded, a monitor also forks the work that must not come from
the big daemon: the pod's namespaces, native container setup, exec sessions. It never
restarts.
"""
from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from engine.shim.pod import Pod

log = logging.getLogger("engine.shim.monitor")
Op = Callable[[dict[str, Any]], dict[str, Any]]


def sandbox_dir(req: dict[str, Any]) -> Path:
    raw = req.get("dir")
    if not isinstance(raw, str) or not raw.startswith("/"):
        raise InvalidArgument(f"spawn needs an absolute sandbox directory, got {raw!r}")
    d = Path(raw)
    if not d.is_dir():
        raise NotFound(f"sandbox directory {d} does not exist")
    return d


def pods_per_monitor(req: dict[str, Any]) -> int:
    k = req.get("pods_per_monitor", 1)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidArgument(f"pods_per_monitor is a positive integer, got {k!r}")
    return k


class MonitorProcess:
    def __init__(self) -> None:
        self.sel: selectors.BaseSelector = selectors.DefaultSelector()
        self.pods: dict[Path, Pod] = {}
        self.by_pid: dict[int, tuple[Pod, str]] = {}  # container init pid -> its pod, id
        self.opened = 0  # pods ever hosted: a process that has hosted K takes no more

    def setup(self) -> None:
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.sel.register(r, selectors.EVENT_READ, ("signal", None))

    def adopt(self, d: Path) -> Pod:
        if d in self.pods:
            raise AlreadyExists(f"this monitor already serves {d.name}")
        pod = Pod(d, self)
        pod.listen()
        self.pods[d] = pod
        self.opened += 1
        return pod

    # -- the Host protocol of engine.shim.pod ---------------------------------------------
    def track(self, pid: int, pod: Pod, cid: str) -> None:
        self.by_pid[pid] = (pod, cid)

    def untrack(self, pid: int) -> None:
        self.by_pid.pop(pid, None)

    def host_op(self, op: str) -> Op | None:
        handler: Op | None = getattr(self, f"op_{op}", None)
        return handler

    def pod_gone(self, pod: Pod) -> None:
        self.pods.pop(pod.dir, None)

    # -- process-wide operations (on any hosted pod's socket) -----------------------------
    def op_ping(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid(), "pods": sorted(str(d) for d in self.pods)}

    def op_modules(self, req: dict[str, Any]) -> dict[str, Any]:
        """The modules loaded here: the zygote must have imported them all before forking."""
        return {"modules": sorted(sys.modules)}

    def op_adopt(self, req: dict[str, Any]) -> dict[str, Any]:
        """Serve one more sandbox dir, if this process has room: {"dir", "pods_per_monitor"}.
        Room counts every pod ever hosted, not the live ones: a process fills up once and
        then drains, so it cannot be kept alive for ever by churn, and the spawner can
        count room without asking."""
        d = sandbox_dir(req)
        k = pods_per_monitor(req)
        if self.opened >= k:
            raise FailedPrecondition(f"this monitor has hosted {self.opened} of "
                                     f"{k} pods: no room")
        self.adopt(d)
        log.info("monitor %d adopted %s (%d pods)", os.getpid(), d, len(self.pods))
        with contextlib.suppress(OSError), open(d / "monitor.log", "a") as f:
            f.write(f"served by monitor process {os.getpid()}, which logs to "
                    f"{os.readlink('/proc/self/fd/2')}\n")
        return {"pid": os.getpid(), "pods": len(self.pods)}

    # -- the loop -------------------------------------------------------------------------
    def serve(self) -> None:
        """Until the last pod is gone."""
        while self.pods:
            for key, _ in self.sel.select(timeout=1.0):
                kind, arg = key.data
                if kind == "accept":
                    arg.accept()
                elif kind == "client":
                    pod, buf = arg
                    pod.client(key.fileobj, buf)
                elif kind == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(key.fd, 4096)
                elif kind == "output":
                    pod, cid, _ = arg
                    pod.output(key.fd, cid)
                elif kind == "attach":
                    pod, cid, reader = arg
                    pod.sessions.attached_input(key.fileobj, cid, reader=reader)
                elif kind == "exec":
                    pod, pid = arg
                    pod.sessions.exec_input(key.fileobj, pid)
            self.reap()
        self.sel.close()

    def reap(self, block_pid: int = 0) -> None:
        """Reap every exited child; with `block_pid`, until that one is reaped."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                if block_pid:
                    time.sleep(0.005)
                    continue
                return
            if any(pod.sessions.reaped(pid, status) for pod in list(self.pods.values())):
                continue
            owner = self.by_pid.get(pid)
            if owner is not None:
                owner[0].exited(owner[1], status)
            if pid == block_pid:
                return

