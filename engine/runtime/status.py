"""Container and sandbox states; the enum owns the legal transitions."""
from __future__ import annotations

import enum

from engine.errors import FailedPrecondition


class Status(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"

    def can_start(self) -> bool:
        return self is Status.CREATED

    def can_kill(self) -> bool:
        return self in {Status.CREATED, Status.RUNNING}

    def can_delete(self) -> bool:
        return self in {Status.CREATED, Status.EXITED, Status.UNKNOWN}

    def can_become(self, new: Status) -> bool:
        return new in _NEXT[self]

    def require(self, new: Status, what: str) -> None:
        if not self.can_become(new):
            raise FailedPrecondition(f"{what} is {self.value}; cannot become {new.value}")


_NEXT: dict[Status, set[Status]] = {
    Status.CREATED: {Status.RUNNING, Status.EXITED},
    Status.RUNNING: {Status.EXITED},
    Status.EXITED: set(),
    Status.UNKNOWN: {Status.EXITED},
}


class SandboxStatus(enum.StrEnum):
    READY = "ready"
    NOTREADY = "notready"
