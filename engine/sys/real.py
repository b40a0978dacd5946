"""The Syscalls implementation that calls the kernel."""
from __future__ import annotations

from engine.sys import linux


class LinuxSyscalls:
    def unshare(self, flags: int) -> None:
        linux.unshare(flags)

    def setns(self, fd: int, nstype: int) -> None:
        linux.setns(fd, nstype)

    def mount(self, source: str, target: str, fstype: str, flags: int, data: str = "") -> None:
        linux.mount(source, target, fstype, flags, data)

    def umount2(self, target: str, flags: int) -> None:
        linux.umount2(target, flags)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        linux.pivot_root(new_root, put_old)

    def sethostname(self, name: str) -> None:
        linux.sethostname(name)

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int:
        return linux.prctl(option, arg2, arg3, arg4, arg5)

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        linux.capset(effective, permitted, inheritable)

    def seccomp_load(self, program: list[tuple[int, int, int, int]]) -> None:
        linux.seccomp_load(program)
