"""mount_setattr(2): mount attributes applied to a whole mount tree (Linux 5.12+); what
makes a bind mount read-only together with everything mounted below it."""
from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import struct

from engine.errors import FailedPrecondition

# mount_setattr has the same number on every architecture (the unified table, 5.12)
SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
_ATTR = struct.Struct("=QQQQ")  # struct mount_attr: attr_set, attr_clr, propagation, userns_fd

_libc = ctypes.CDLL(None, use_errno=True)


def _mount_setattr(path: str, *, flags: int, attr_set: int) -> None:
    buf = ctypes.create_string_buffer(_ATTR.pack(attr_set, 0, 0, 0), _ATTR.size)
    rc = _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, os.fsencode(path), flags, buf,
                       ctypes.c_size_t(_ATTR.size))
    if rc != 0:
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            raise FailedPrecondition(f"recursive read-only mounts need mount_setattr(2), Linux "
                                f"5.12+ (this kernel: {platform.release()})")
        raise OSError(err, f"mount_setattr {path}: {os.strerror(err)}")


def make_recursively_readonly(path: str) -> None:
    """`path` (a mount point) and every mount below it become read-only."""
    _mount_setattr(path, flags=AT_RECURSIVE, attr_set=MOUNT_ATTR_RDONLY)


@functools.cache
def supported() -> bool:
    """Whether this kernel has mount_setattr (probed with an empty path: ENOENT, not ENOSYS)."""
    try:
        _mount_setattr("", flags=0, attr_set=0)
    except FailedPrecondition:
        return False
    except OSError:
        return True
    return True
