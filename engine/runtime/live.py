"""What changes under the runtime without a verb: container states (written by the pod
monitors) and the monitors' lives. Each is read from disk once and kept until the
`ChangeWatch` says it changed: a state until its container's directory sees a write, a
monitor's life until its pidfd reports the exit. `sync()` asks the watch (one
`epoll_wait(0)`) and must run at the start of every read, so that a read never answers
older than a change that had happened when it began.

A container whose directory cannot be watched, or a monitor without a pidfd, is read from
disk on every call instead: slower, never wrong.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

from engine.errors import NotFound
from engine.runtime.state import ContainerState, read_state
from engine.runtime.status import Status
from engine.runtime.watch import ChangeWatch
from engine.shim import protocol as P
from engine.shim.client import monitor_alive

MonitorCheck = Callable[[Path], bool]


class LiveState:
    def __init__(self, watch: ChangeWatch, *, check: MonitorCheck = monitor_alive) -> None:
        self._watch = watch
        self._check = check
        self._lock = threading.Lock()
        self._states: dict[str, ContainerState] = {}
        self._watched: set[str] = set()  # containers whose state may be kept
        self._monitors: dict[str, bool] = {}  # True: alive, pidfd watched; False: gone
        # Read from disk each time, so their changes cannot be seen coming: while there
        # are any, every sync() is a new generation (views built on it are never reused).
        self._unwatched: set[str] = set()  # containers
        self._unpinned: set[str] = set()  # sandboxes
        self._generation = 0

    def close(self) -> None:
        self._watch.close()

    def sync(self) -> int:
        """Apply what the watch saw; returns the generation, which grows with every
        change seen (so a cache built at generation G is current while it stays G)."""
        changes = self._watch.poll()
        with self._lock:
            if changes or self._unwatched or self._unpinned:
                if changes.overflow:
                    self._states.clear()
                for cid in changes.dirs:
                    self._states.pop(cid, None)
                for cid in changes.lost & self._watched:  # unwatched from now on
                    self._watched.discard(cid)
                    self._unwatched.add(cid)
                for sid in changes.exited:
                    self._monitors[sid] = False
                self._generation += 1
            return self._generation

    def bump(self) -> None:
        """Something the watch does not see changed (a record): a new generation."""
        with self._lock:
            self._generation += 1

    # -- containers -------------------------------------------------------------------------
    def track(self, cid: str, container_dir: Path) -> None:
        watched = self._watch.watch_dir(cid, container_dir)
        with self._lock:
            (self._watched if watched else self._unwatched).add(cid)

    def forget(self, cid: str) -> None:
        self._watch.unwatch_dir(cid)
        with self._lock:
            self._watched.discard(cid)
            self._unwatched.discard(cid)
            self._states.pop(cid, None)
            self._generation += 1

    def state(self, cid: str, sandbox_dir: Path, *, created_at: int) -> ContainerState:
        with self._lock:
            known = self._states.get(cid)
            if known is not None:
                return known
            # Read under the lock: a write seen by sync() meanwhile cannot be overwritten
            # by this older read.
            try:
                state = read_state(P.state_path(sandbox_dir, cid))
            except NotFound:
                return ContainerState(status=Status.UNKNOWN, created_at=created_at)
            if cid in self._watched:
                self._states[cid] = state
            return state

    # -- monitors ---------------------------------------------------------------------------
    def known_monitor(self, sid: str) -> bool | None:
        """The kept answer of `monitor_alive`, if there is one."""
        with self._lock:
            return self._monitors.get(sid)

    def monitor_alive(self, sid: str, sandbox_dir: Path, *, settled: bool) -> bool:
        """Whether the sandbox's monitor runs. `settled` = no monitor can start for this
        sandbox any more unless one runs now (it is not being made), so "gone" is kept."""
        with self._lock:
            known = self._monitors.get(sid)
            if known is not None:
                return known
            alive = self._check(sandbox_dir)
            if alive:
                self._pin(sid, sandbox_dir)
            elif settled:
                self._monitors[sid] = False
            if sid in self._monitors:
                self._unpinned.discard(sid)
            else:
                self._unpinned.add(sid)
            return alive

    def _pin(self, sid: str, sandbox_dir: Path) -> None:
        """Watch the monitor's pidfd; keep "alive" only if it is still the monitor after
        the pidfd pinned the process (no PID reuse in between)."""
        try:
            pid = int((sandbox_dir / P.PIDFILE).read_text())
        except (OSError, ValueError):
            return
        if self._watch.watch_pid(sid, pid) < 0:
            return
        with contextlib.suppress(OSError, ValueError):
            if self._check(sandbox_dir) and int((sandbox_dir / P.PIDFILE).read_text()) == pid:
                self._monitors[sid] = True
                return
        self._watch.unwatch_pid(sid)

    def forget_sandbox(self, sid: str) -> None:
        self._watch.unwatch_pid(sid)
        with self._lock:
            self._monitors.pop(sid, None)
            self._unpinned.discard(sid)
            self._generation += 1
