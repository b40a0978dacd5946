"""A Syscalls fake that records every call in order (for unit tests of init sequences)."""
from __future__ import annotations

from typing import Any


class FakeSyscalls:
    def __init__(self, fail: dict[str, OSError] | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._fail = fail or {}

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if name in self._fail:
            raise self._fail[name]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def unshare(self, flags: int) -> None:
        self._record("unshare", flags)

    def setns(self, fd: int, nstype: int) -> None:
        self._record("setns", fd, nstype)

    def mount(self, source: str, target: str, fstype: str, flags: int, data: str = "") -> None:
        self._record("mount", source, target, fstype, flags, data)

    def umount2(self, target: str, flags: int) -> None:
        self._record("umount2", target, flags)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self._record("pivot_root", new_root, put_old)

    def sethostname(self, name: str) -> None:
        self._record("sethostname", name)

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int:
        self._record("prctl", option, arg2, arg3, arg4, arg5)
        return 0

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        self._record("capset", effective, permitted, inheritable)

    def seccomp_load(self, program: list[tuple[int, int, int, int]]) -> None:
        self._record("seccomp_load", len(program))
