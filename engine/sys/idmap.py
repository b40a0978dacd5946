"""ID-mapped mounts (Linux 5.12+): a clone of a mount whose file ownership is seen through a
user namespace's ID mapping, made with the new mount API (open_tree, mount_setattr with
MOUNT_ATTR_IDMAP, move_mount).

A file owned by on-disk uid U shows as the host uid the user namespace maps container uid U
to, so inside that namespace it is U again; what a process of the namespace writes lands on
disk with the container's ids. This is how a rootfs unpacked as root stays root-owned for a
pod in a user namespace without a chown of the image.

Stdlib only (ctypes): imported by the pod monitor's helpers as well as the daemon.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct
from collections.abc import Iterator

from engine.sys.syscalls_x86_64 import SYSCALLS

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000
_ATTR = struct.Struct("=QQQQ")  # struct mount_attr: attr_set, attr_clr, propagation, userns_fd

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def open_tree_clone(path: str, *, recursive: bool) -> int:
    """A detached copy of the mount at (or holding) `path`, as an O_CLOEXEC fd."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    return _check(_libc.syscall(SYSCALLS["open_tree"], AT_FDCWD, os.fsencode(path), flags),
                  f"open_tree {path}")


def set_idmap(tree_fd: int, userns_fd: int, *, recursive: bool, what: str) -> None:
    """Give the detached mount `tree_fd` (and its submounts, if `recursive`) the ID mapping
    of the user namespace `userns_fd`."""
    buf = ctypes.create_string_buffer(_ATTR.pack(MOUNT_ATTR_IDMAP, 0, 0, userns_fd),
                                      _ATTR.size)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(_libc.syscall(SYSCALLS["mount_setattr"], tree_fd, b"", flags, buf,
                         ctypes.c_size_t(_ATTR.size)), f"ID-mapping {what}")


def move_mount(tree_fd: int, target: str) -> None:
    """Attach the detached mount `tree_fd` at `target`."""
    _check(_libc.syscall(SYSCALLS["move_mount"], tree_fd, b"", AT_FDCWD,
                         os.fsencode(target), MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {target}")


def mount_idmapped(source: str, target: str, *, userns_fd: int, recursive: bool) -> None:
    """Mount an ID-mapped clone of `source` at `target` (which must exist: a directory for a
    directory, a file for a file). OSError(EINVAL) when the filesystem cannot be ID-mapped."""
    fd = open_tree_clone(source, recursive=recursive)
    try:
        set_idmap(fd, userns_fd, recursive=recursive, what=source)
        move_mount(fd, target)
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_userns(path: str) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def can_idmap(path: str, *, userns_fd: int) -> tuple[bool, str]:
    """Whether the filesystem holding `path` can be ID-mapped with `userns_fd` (the clone is
    never attached, so nothing is left mounted); (False, why) otherwise."""
    try:
        fd = open_tree_clone(path, recursive=False)
    except OSError as e:
        return False, str(e)
    try:
        set_idmap(fd, userns_fd, recursive=False, what=path)
    except OSError as e:
        why = "the kernel has no ID-mapped mounts" if e.errno == errno.ENOSYS else str(e)
        return False, why
    finally:
        os.close(fd)
    return True, ""
