"""Keeping cgroup migrations cheap while a verb moves a process into a cgroup.

Moving a process into a cgroup takes the kernel's global cgroup_threadgroup_rwsem for
writing; the first writer after an idle spell waits for an RCU grace period (the lock's
rcu_sync switching readers to their slow path), and writers within about one grace period
of the last one do not. Measured here (cgroup v1, 2 cores): 5-17 ms for a migration after
50 ms of quiet, 0.1-0.3 ms within 10 ms of another. RunPodSandbox (the shared PID
namespace's holder joins the pod cgroup) and CreateContainer (the container's init joins
its cgroup, whichever driver) each pay it once, on their critical path.

`primed()` starts that wait at the beginning of the verb instead, beside the work that
comes before the migration: a thread of ours writes the daemon's own pid to the
`cgroup.procs` of the cgroup it is already in (a migration that moves nothing but takes
the lock like any other), then again every `interval` while the verb runs, so that the
real migration finds the lock warm. Best effort: a write that fails (a read-only cgroupfs,
say) stops the priming and changes nothing else.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")


def own_procs_file(*, root: Path = CGROUP_ROOT, self_cgroup: str = "/proc/self/cgroup"
                   ) -> Path | None:
    """The `cgroup.procs` of the cgroup this process is in, on one hierarchy mounted under
    `root` (v1: <root>/<controllers>/<path>; v2: <root>/<path> or <root>/unified/<path>)."""
    try:
        with open(self_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers and not controllers.startswith("name="):
            candidates = [root / controllers / rel]
        elif not controllers:
            candidates = [root / rel, root / "unified" / rel]
        else:
            continue
        for d in candidates:
            if (d / "cgroup.procs").is_file():
                return d / "cgroup.procs"
    return None


class _Primer:
    def __init__(self, procs: Path, *, interval: float, limit: float) -> None:
        self.procs = procs
        self.interval = interval
        self.limit = limit
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        pid = str(os.getpid()).encode()
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                fd = os.open(self.procs, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
            except OSError as e:
                log.debug("cgroup migration priming stopped: %s", e)
                return
            self.stop.wait(self.interval)


_procs: list[Path | None] = []  # found once per process


def _own() -> Path | None:
    if not _procs:
        _procs.append(own_procs_file())
    return _procs[0]


@contextlib.contextmanager
def primed(*, procs: Path | None = None, interval: float = 0.002,
           limit: float = 5.0) -> Iterator[None]:
    """Keep cgroup migrations cheap for the duration of the block (at most `limit`
    seconds), by writes to `procs` (default: this process's own cgroup.procs)."""
    procs = procs or _own()
    if procs is None:
        yield
        return
    primer = _Primer(procs, interval=interval, limit=limit)
    threading.Thread(target=primer.run, name="cgroup-primer", daemon=True).start()
    try:
        yield
    finally:
        primer.stop.set()
