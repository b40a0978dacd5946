"""Container log rotation: past 10 MiB a log is renamed `<log>.<UTC time>` and the runtime
reopens it (ReopenContainerLog); at most 5 files per container are kept, as upstream's
containerLogMaxSize / containerLogMaxFiles defaults."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from cri.api import runtime_pb2 as pb
from kubelet_py.clock import Clock
from kubelet_py.cri_client import CRIClient, CRIError

log = logging.getLogger(__name__)
MAX_SIZE = 10 * 1024 * 1024
MAX_FILES = 5
PERIOD = 10.0


def rotated_files(current: Path) -> list[Path]:
    """The rotated siblings of a log, oldest first (their suffixes sort by time)."""
    return sorted(p for p in current.parent.glob(current.name + ".*") if p.is_file())


def prune(current: Path, *, max_files: int) -> list[Path]:
    """Delete the oldest rotated files so that, with the live log, `max_files` remain."""
    old = rotated_files(current)
    doomed = old[: max(0, len(old) - (max_files - 1))]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


class LogRotator:
    def __init__(self, cri: CRIClient, *, clock: Clock, max_size: int = MAX_SIZE,
                 max_files: int = MAX_FILES, period: float = PERIOD) -> None:
        self._cri = cri
        self._clock = clock
        self._max_size = max_size
        self._max_files = max_files
        self._period = period
        self.rotations = 0

    async def rotate_container(self, container_id: str, log_path: Path) -> bool:
        try:
            size = log_path.stat().st_size
        except FileNotFoundError:
            return False
        if size <= self._max_size:
            return False
        stamp = self._clock.now().strftime("%Y%m%d-%H%M%S.%f")
        os.replace(log_path, log_path.with_name(f"{log_path.name}.{stamp}"))
        try:
            await self._cri.containers.reopen_log(container_id)
        except CRIError as exc:
            log.warning("container %s: reopening its log failed: %s", container_id, exc)
        prune(log_path, max_files=self._max_files)
        self.rotations += 1
        return True

    async def rotate_once(self) -> None:
        for c in await self._cri.containers.list():
            if c.state != pb.CONTAINER_RUNNING:  # only a live writer grows a log
                continue
            try:
                status = await self._cri.containers.status(c.id)
            except CRIError:
                continue
            if status.log_path:
                await self.rotate_container(c.id, Path(status.log_path))

    async def run(self) -> None:
        while True:
            try:
                await self.rotate_once()
            except CRIError as exc:
                log.warning("log rotation pass failed: %s", exc)
            await self._clock.sleep(self._period)
