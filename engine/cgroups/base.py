"""The cgroup interface shared by v1 and v2, the resource values, and the stats read back.

Paths are relative to the hierarchy root ("kubelet-py/pod-<id>/<cid>"); a manager owns the
mapping to controller directories.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from engine.errors import FailedPrecondition, InvalidArgument


@dataclasses.dataclass(frozen=True)
class Resources:
    """0 / "" means "not set" (inherit). cpu_quota < 0 means unlimited."""

    cpu_shares: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    memory_limit: int = 0
    pids_limit: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""

    def validate(self) -> None:
        if self.memory_limit < 0 or self.pids_limit < 0 or self.cpu_shares < 0:
            raise InvalidArgument(f"negative resource value in {self}")
        if self.cpu_period and not 1000 <= self.cpu_period <= 1_000_000:
            raise InvalidArgument(f"cpu period {self.cpu_period}us outside [1000, 1000000]")
        if 0 < self.cpu_quota < 1000:
            raise InvalidArgument(f"cpu quota {self.cpu_quota}us below the 1000us minimum")


@dataclasses.dataclass(frozen=True)
class CgroupStats:
    cpu_usage_ns: int
    memory_usage: int
    memory_working_set: int
    memory_rss: int
    oom_kills: int
    pids: int


class CgroupManager(Protocol):
    version: int

    def create(self, path: str, resources: Resources) -> None: ...
    def update(self, path: str, resources: Resources) -> None: ...
    def join(self, path: str, pid: int) -> None: ...
    def exists(self, path: str) -> bool: ...
    def procs(self, path: str) -> list[int]: ...
    def destroy(self, path: str) -> None: ...
    def stats(self, path: str) -> CgroupStats: ...
    def oom_kills(self, path: str) -> int: ...
    def cgroup_dirs(self, path: str) -> list[Path]: ...


def check_path(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in {".", ".."} for p in parts):
        raise InvalidArgument(f"invalid cgroup path {path!r}")
    return "/".join(parts)


def write(file: Path | str, value: str) -> None:
    """One write(2) of `value` (cgroupfs takes each write as one command); plain os calls,
    no buffered file object: container setup does dozens of these."""
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise InvalidArgument(f"cgroup write {value!r} to {file}: {e.strerror}") from e


def mkdir(d: Path) -> bool:
    """Create one cgroup directory; False when it existed already."""
    try:
        os.mkdir(d)
    except FileExistsError:
        return False
    except OSError as e:
        raise InvalidArgument(f"cannot create cgroup {d}: {e.strerror}") from e
    return True


def remove_made(made: list[Path]) -> None:
    """Undo a create that failed half-way: remove the directories it made, deepest first."""
    for d in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(d)


def read_text(file: Path | str) -> str:
    """A small control file's content (FileNotFoundError passes through)."""
    fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def read_int(file: Path, default: int = 0) -> int:
    try:
        text = read_text(file).strip()
    except FileNotFoundError:
        return default
    return int(text) if text and text != "max" else default


def read_kv(file: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in read_text(file).splitlines():
            key, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                out[key] = int(value)
    except FileNotFoundError:
        pass
    return out


def subtree(d: Path | str) -> list[str]:
    """`d` and every cgroup below it, deepest first (what rmdir needs)."""
    order: list[str] = []
    stack = [str(d)]
    while stack:
        cur = stack.pop()
        order.append(cur)
        try:
            with os.scandir(cur) as it:
                stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            continue
    return order[::-1]


def tree_pids(dirs: Iterable[Path | str]) -> list[int]:
    """Every pid in the cgroups and all their descendants."""
    pids: set[int] = set()
    for d in dirs:
        for cg in subtree(d):
            try:
                pids.update(int(x) for x in read_text(os.path.join(cg, "cgroup.procs")).split())
            except (FileNotFoundError, NotADirectoryError):
                continue
    return sorted(pids)


def kill_and_remove(dirs: list[Path], *, timeout: float = 15.0) -> None:
    """SIGKILL everything in the cgroups (descendants included), then rmdir them all,
    deepest first."""
    deadline = time.monotonic() + timeout
    while pids := tree_pids(dirs):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise FailedPrecondition(f"processes {pids} survive SIGKILL in the cgroup")
        time.sleep(0.01)
    for d in dirs:
        for cg in subtree(d):
            _rmdir(Path(cg), deadline)


def _rmdir(d: Path, deadline: float) -> None:
    while True:
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise FailedPrecondition(f"cannot remove cgroup {d}: {e.strerror}") from e
            time.sleep(0.01)


def shares_to_weight(shares: int) -> int:
    """The conversion runc and the kubelet use between cpu.shares and cpu.weight."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142
