"""The one interface both exec drivers implement; only the pod monitor calls it (create,
start, delete, and exec sessions in forks of itself)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Protocol

from engine.execdriver.spec import InitSpec


@dataclasses.dataclass(frozen=True)
class Stdio:
    stdin: int
    stdout: int
    stderr: int


@dataclasses.dataclass(frozen=True)
class Created:
    pid: int
    console: int = -1  # a TTY master the driver obtained itself (runc's console socket)


@dataclasses.dataclass(frozen=True)
class ExecProcess:
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str = ""
    tty: bool = False


class ExecDriver(Protocol):
    name: str

    def create(self, spec: InitSpec, *, bundle: Path, stdio: Stdio, timeout: float) -> Created:
        """Set the container up to the point of exec; return its host pid (and a console
        fd when the driver made the TTY itself). The process is left a child (or, via the
        subreaper, a descendant) of the caller."""
        ...

    def start(self, spec: InitSpec, *, bundle: Path, timeout: float) -> None:
        """Let the created container exec its command."""
        ...

    def delete(self, spec: InitSpec, *, bundle: Path) -> None:
        """Forget the container (driver-side state); the caller killed it already."""
        ...

    def exec_in_child(self, spec: InitSpec, *, bundle: Path, pid: int,
                      process: ExecProcess) -> int:
        """Run `process` inside the running container `pid`. Called in a fork of the monitor
        with the session's stdio on 0-2; returns the process's exit status, or never
        returns (replaced by a runtime binary that exits with it)."""
        ...

    def end_exec(self, *, bundle: Path, helper_pid: int, kill: bool) -> None:
        """The exec session whose helper (the fork that ran exec_in_child) is `helper_pid`
        ends: with `kill`, make sure the command inside the container dies too (the caller
        SIGKILLs the helper itself); either way drop what the driver kept for it."""
        ...
