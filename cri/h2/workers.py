"""The worker threads that run the calls which may block: a fixed set, all started with the
server, so the threads of a running server never change (a pool that grows on demand adds
a thread whenever a request arrives in the instant between a worker posting its answer and
going back to wait, which looks like a leak to anyone counting threads)."""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Work = Callable[[], None]


class Workers:
    def __init__(self, count: int, *, name: str) -> None:
        if count < 1:
            raise ValueError(f"need at least one worker, got {count}")
        self._queue: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}")
                         for i in range(count)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, work: Work) -> None:
        self._queue.put(work)

    def shutdown(self) -> None:
        """Drop the work not started; each thread ends once its current work returns."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            try:
                work()
            except Exception:
                log.exception("a gRPC worker's job failed")
