"""The one interface both exec drivers implement. It is called by the pod monitor (create,
start, signal, delete) and by the runtime (exec_argv for exec sessions)."""
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
class ExecProcess:
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str = ""
    tty: bool = False


class ExecDriver(Protocol):
    name: str

    def create(self, spec: InitSpec, *, bundle: Path, stdio: Stdio, timeout: float) -> int:
        """Set the container up to the point of exec; return its host pid. The process is
        left a child (or, via the subreaper, a descendant) of the caller."""
        ...

    def start(self, spec: InitSpec, *, bundle: Path, timeout: float) -> None:
        """Let the created container exec its command."""
        ...

    def delete(self, spec: InitSpec, *, bundle: Path) -> None:
        """Forget the container (driver-side state); the caller killed it already."""
        ...

    def exec_argv(self, spec: InitSpec, *, bundle: Path, pid: int,
                  process: ExecProcess) -> list[str]:
        """The command that runs `process` inside the running container (stdio inherited,
        exit status = the process's)."""
        ...
