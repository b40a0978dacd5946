"""The mutable, on-disk state of one container (written by its monitor, read by the runtime)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.errors import NotFound
from engine.execdriver.codec import dumps, loads, write_atomic
from engine.runtime.status import Status

REASON_COMPLETED = "Completed"
REASON_ERROR = "Error"
REASON_OOM = "OOMKilled"
REASON_MONITOR_DIED = "MonitorDied"
REASON_START_ERROR = "StartError"


@dataclasses.dataclass(frozen=True)
class ContainerState:
    status: Status = Status.CREATED
    pid: int = 0
    created_at: int = 0  # unix ns
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""

    def exited(self, *, exit_code: int, reason: str, message: str, at: int) -> ContainerState:
        self.status.require(Status.EXITED, "container")
        return dataclasses.replace(self, status=Status.EXITED, exit_code=exit_code,
                                   reason=reason, message=message, finished_at=at)


def write_state(path: Path, state: ContainerState) -> None:
    write_atomic(path, dumps(state))


def read_state(path: Path) -> ContainerState:
    try:
        state = loads(ContainerState, path.read_text())
    except FileNotFoundError as e:
        raise NotFound(f"no state at {path}") from e
    return dataclasses.replace(state, status=Status(state.status))
