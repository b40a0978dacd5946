"""Directories removed in one rename: moved aside under <run_root>/removing and deleted by
a background thread, so a RemovePodSandbox does not wait for a dozen unlinks. Whatever a
crash left there is deleted when the next Trash is made."""
from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class Trash:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        for left in self.root.iterdir():  # a previous daemon's, unfinished
            self._queue.put(left)
        if not self._queue.empty():
            self._start()

    def discard(self, path: Path) -> None:
        """`path` is gone from its place when this returns (its content soon after)."""
        aside = self.root / f"{path.name}-{os.urandom(4).hex()}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        except OSError as exc:  # another filesystem: delete in place
            log.debug("cannot move %s aside (%s); deleting it now", path, exc)
            shutil.rmtree(path, ignore_errors=True)
            return
        self._queue.put(aside)
        self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._empty, name="runtime-trash",
                                                daemon=True)
                self._thread.start()

    def _empty(self) -> None:
        while True:
            path = self._queue.get()
            if path is None:
                return
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Delete what is pending, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()
