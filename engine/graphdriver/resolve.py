"""Path resolution confined to a directory: openat2(2) with RESOLVE_IN_ROOT.

Every lookup the unpacker does goes through here, so a symlink (absolute or with `..`) in
a layer is resolved as if the layer directory were `/`, in the kernel, without races.
Linux >= 5.6 is required; an older kernel gets a precise Unavailable error.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform

from engine.errors import Unavailable

_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "arm64": 437, "riscv64": 437,
                "ppc64le": 437, "s390x": 437}.get(platform.machine())
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def open_in_root(root_fd: int, path: str, flags: int) -> int:
    """Open `path` (relative to root_fd) with every symlink resolved inside root_fd."""
    if _SYS_OPENAT2 is None:
        raise Unavailable(f"openat2 syscall number unknown on {platform.machine()}")
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(root_fd),
                  ctypes.c_char_p(os.fsencode(path or ".")), ctypes.byref(how),
                  ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            raise Unavailable("openat2(2) is not available: Linux >= 5.6 is required")
        raise OSError(err, os.strerror(err), path)
    return int(fd)
