"""Containers whose pod monitor died, as the read verbs see them.

A read (ContainerStatus, ListContainers) that finds a container's monitor gone must not
kill and remove the container's cgroup itself: that waits on the kernel, for seconds when
processes are slow to die, and the CRI serves these reads on its event loop, so every other
call would wait too. The read reports the container exited at once (137, MonitorDied) and a
thread does the kill and writes that same state; every read in between sees the same
answer, and a failed reap is retried by the next read.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from engine.errors import EngineError, NotFound
from engine.runtime import container
from engine.runtime.context import Ctx
from engine.runtime.state import ContainerState
from engine.runtime.store import ContainerRecord

log = logging.getLogger(__name__)


class DeadMonitorReaper:
    def __init__(self, ctx: Ctx, *, lock_for: Callable[[str], threading.RLock]) -> None:
        self._ctx = ctx
        self._lock_for = lock_for  # the runtime's per-sandbox lock: no verb runs meanwhile
        self._guard = threading.Lock()
        self._pending: dict[str, ContainerState] = {}

    def state(self, rec: ContainerRecord, current: ContainerState) -> ContainerState:
        """The state to report for `rec` (not exited, monitor gone); the reap is queued."""
        with self._guard:
            known = self._pending.get(rec.id)
            if known is not None:
                return known
            dead = container.monitor_died_state(current, now=self._ctx.clock())
            self._pending[rec.id] = dead
        threading.Thread(target=self._reap, args=(rec, dead), daemon=True,
                         name=f"reap-{rec.id[:12]}").start()
        return dead

    def pending(self) -> int:
        with self._guard:
            return len(self._pending)

    def _reap(self, rec: ContainerRecord, dead: ContainerState) -> None:
        try:
            with self._lock_for(rec.sandbox_id):
                try:
                    self._ctx.store.load_container(rec.id)
                except NotFound:
                    return  # removed meanwhile: RemoveContainer cleaned up
                container.mark_monitor_died(self._ctx, rec, dead=dead)
        except EngineError as exc:
            log.warning("container %s: reaping after its monitor died: %s", rec.id, exc)
        except Exception:
            log.exception("container %s: reaping after its monitor died failed", rec.id)
        finally:
            with self._guard:
                self._pending.pop(rec.id, None)
