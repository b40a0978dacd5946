"""Performing the Mount lists drivers return: mount(2)/umount2(2) through libc."""
from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

from engine.errors import InvalidArgument, Unavailable
from engine.graphdriver.base import Mount

MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MNT_DETACH = 0x2
_FLAG_OPTIONS = {"ro", "rw", "bind", "rbind"}
PAGE_LIMIT = 4095  # the kernel copies at most one page of mount data

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                     flags, data.encode() if data else None)
    if rc != 0:
        err = ctypes.get_errno()
        raise Unavailable(f"mount {fstype or 'bind'} {source} on {target}: {os.strerror(err)}")


def mount_one(m: Mount, target: str) -> None:
    ro = "ro" in m.options
    if m.type == "bind":
        flags = MS_BIND | (MS_REC if "rbind" in m.options else 0)
        _mount(m.source, target, None, flags, None)
        if ro:
            _mount("", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
        return
    data = ",".join(o for o in m.options if o not in _FLAG_OPTIONS)
    if len(data) > PAGE_LIMIT:
        raise InvalidArgument(
            f"{m.type} mount options are {len(data)} bytes, above the kernel's page limit")
    _mount(m.source, target, m.type, MS_RDONLY if ro else 0, data)


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Mount each entry at `target` in order (the rootfs of a container)."""
    for m in mounts:
        mount_one(m, target)


def unmount(target: str, *, detach: bool = False) -> None:
    if _libc.umount2(target.encode(), MNT_DETACH if detach else 0) != 0:
        err = ctypes.get_errno()
        raise Unavailable(f"umount {target}: {os.strerror(err)}")
