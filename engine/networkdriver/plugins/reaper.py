"""Deferred veth deletion for callers that run the plugins in-process (the engine, benches).

Deleting a network device makes the kernel wait for an RCU barrier (``netdev_run_todo``):
15-25 ms in which the caller's thread sleeps, however little the machine does. A plugin exec
must wait (it cannot outlive its DEL), but an in-process DEL can return once the attachment
is cut off: the bridge plugin releases the address and the masquerade rules and disables the
host end's bridge port (the pod leaves the network's L2 segment: nothing of the released
address is answered or forwarded there any more), and leaves the deletion itself to a
reaper's worker thread.

Workers are started on demand, up to ``workers`` at once (deletions are kernel sleeps, and
concurrent ones share their grace periods: 8 take about the time of 2), linger a little for
more, and are not daemon threads: the interpreter waits for them at exit, so no deletion
handed over is lost with the process. An ADD for the same netns and interface waits for the
pending deletion first (:meth:`Reaper.wait`).
"""
from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class Reaper:
    """Runs submitted jobs on worker threads; jobs carry a key to wait for."""

    def __init__(self, *, workers: int = 8, linger: float = 1.0) -> None:
        """``linger``: seconds an idle worker waits for more work before it ends (starting a
        thread for each DEL would cost the caller a thread start and a GIL hand-over)."""
        lock = threading.Lock()
        self._work = threading.Condition(lock)  # a job was queued
        self._done = threading.Condition(lock)  # a job finished, or a worker ended
        self._jobs: deque[tuple[str, Callable[[], object]]] = deque()
        self._pending: Counter[str] = Counter()
        self._max_workers = workers
        self._linger = linger
        self._workers = 0
        self._idle = 0

    def submit(self, key: str, job: Callable[[], object]) -> None:
        with self._work:
            self._jobs.append((key, job))
            self._pending[key] += 1
            if self._idle >= len(self._jobs):
                self._work.notify()
            elif self._workers < self._max_workers:
                self._workers += 1
                self._idle += 1
                threading.Thread(target=self._run, name="kpy-cni-reaper").start()

    @property
    def workers(self) -> int:
        with self._work:
            return self._workers

    def pending(self, key: str | None = None) -> int:
        with self._work:
            return sum(self._pending.values()) if key is None else self._pending[key]

    def wait(self, key: str | None = None, timeout: float | None = None) -> bool:
        """Until no job of ``key`` (any job, when None) is pending; False on timeout."""
        with self._done:
            return self._done.wait_for(
                lambda: not (self._pending if key is None else self._pending[key]), timeout)

    def close(self) -> None:
        """Idle workers end now rather than after ``linger`` (queued jobs still run)."""
        with self._work:
            self._linger = 0.0
            self._work.notify_all()

    def _run(self) -> None:
        while True:
            with self._work:
                if not self._jobs:
                    self._work.wait(self._linger)
                if not self._jobs:
                    self._workers -= 1
                    self._idle -= 1
                    self._done.notify_all()  # same lock: whoever waits for the pool to drain
                    return
                key, job = self._jobs.popleft()
                self._idle -= 1
            try:
                job()
            except Exception:
                log.warning("deferred CNI cleanup %s failed", key, exc_info=True)
            finally:
                with self._done:
                    self._idle += 1
                    self._pending[key] -= 1
                    if not self._pending[key]:
                        del self._pending[key]
                    self._done.notify_all()
