"""Changes nobody asked the runtime for, learnt without reading the disk: a container's
state file rewritten by its monitor (inotify on the container's directory) and a monitor
exiting (a pidfd). Both sit in one epoll set, so "did anything happen?" is one
`epoll_wait(0)`: the runtime asks before every read and so never answers older than a
change that had already happened when the read began.

Keys are the caller's (container and sandbox IDs). A directory or process that cannot be
watched (no inotify, the watch limit reached, a kernel without pidfds) is refused with
False; the caller then reads the disk for it every time.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import os
import select
import struct
import threading
import weakref
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_DELETE = 0x00000200
IN_IGNORED = 0x00008000
IN_Q_OVERFLOW = 0x00004000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
# A state file is replaced by a rename; the rest catches any other way of changing it.
DIR_EVENTS = IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_DELETE | IN_ONLYDIR
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of name


@dataclasses.dataclass(frozen=True)
class Changes:
    dirs: frozenset[str] = frozenset()  # keys whose directory saw a change
    exited: frozenset[str] = frozenset()  # keys whose process exited
    lost: frozenset[str] = frozenset()  # keys whose directory is no longer watched
    overflow: bool = False  # the kernel dropped events: anything may have changed

    def __bool__(self) -> bool:
        return bool(self.dirs or self.exited or self.lost or self.overflow)


class _Inotify:
    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = (ctypes.c_int, ctypes.c_int)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        self.fd: int = fd

    def add(self, path: Path) -> int:
        wd = int(self._add(self.fd, os.fsencode(path), DIR_EVENTS))
        if wd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), str(path))
        return wd

    def remove(self, wd: int) -> None:
        self._rm(self.fd, wd)  # EINVAL when the kernel dropped it already: fine

    def read(self) -> list[tuple[int, int]]:
        """Pending (wd, mask) pairs; [] when none."""
        out: list[tuple[int, int]] = []
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return out
            offset = 0
            while offset < len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, offset)
                out.append((wd, mask))
                offset += _EVENT.size + length


class ChangeWatch:
    """Thread-safe; `poll()` never blocks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoll = select.epoll()
        self._fds: list[int] = []
        self._inotify: _Inotify | None
        try:
            self._inotify = _Inotify()
        except OSError:
            self._inotify = None  # every directory then reads "cannot watch"
        else:
            self._epoll.register(self._inotify.fd, select.EPOLLIN)
            self._fds.append(self._inotify.fd)
        self._wd_key: dict[int, str] = {}
        self._key_wd: dict[str, int] = {}
        self._pidfd_key: dict[int, str] = {}
        self._key_pidfd: dict[str, int] = {}
        self._finalizer = weakref.finalize(self, _close, self._epoll, self._fds)

    def close(self) -> None:
        with self._lock:
            self._finalizer()

    # -- directories ------------------------------------------------------------------------
    def watch_dir(self, key: str, path: Path) -> bool:
        with self._lock:
            if self._inotify is None:
                return False
            try:
                wd = self._inotify.add(path)
            except OSError:
                return False
            self._wd_key[wd] = key
            self._key_wd[key] = wd
            return True

    def unwatch_dir(self, key: str) -> None:
        with self._lock:
            wd = self._key_wd.pop(key, None)
            if wd is not None and self._inotify is not None:
                self._wd_key.pop(wd, None)
                self._inotify.remove(wd)

    # -- processes --------------------------------------------------------------------------
    def watch_pid(self, key: str, pid: int) -> int:
        """A pidfd for `pid`, watched under `key` (replacing an earlier one); -1 when the
        process is gone or pidfds are not available. The caller checks, after this, that
        the process is still the one it means (the pidfd then pins it)."""
        try:
            fd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            return -1
        with self._lock:
            self._drop_pid(key)
            self._epoll.register(fd, select.EPOLLIN)
            self._fds.append(fd)
            self._pidfd_key[fd] = key
            self._key_pidfd[key] = fd
        return fd

    def unwatch_pid(self, key: str) -> None:
        with self._lock:
            self._drop_pid(key)

    def _drop_pid(self, key: str) -> None:
        fd = self._key_pidfd.pop(key, None)
        if fd is None:
            return
        self._pidfd_key.pop(fd, None)
        with contextlib.suppress(OSError):
            self._epoll.unregister(fd)
        self._fds.remove(fd)
        os.close(fd)

    # -- what happened ----------------------------------------------------------------------
    def poll(self) -> Changes:
        with self._lock:
            try:
                ready = self._epoll.poll(0)
            except InterruptedError:
                return Changes(overflow=True)
            if not ready:
                return Changes()
            dirs: set[str] = set()
            exited: set[str] = set()
            lost: set[str] = set()
            overflow = False
            for fd, _ in ready:
                if self._inotify is not None and fd == self._inotify.fd:
                    for wd, mask in self._inotify.read():
                        if mask & IN_Q_OVERFLOW:
                            overflow = True
                            continue
                        key = self._wd_key.get(wd)
                        if key is None:
                            continue
                        dirs.add(key)
                        if mask & IN_IGNORED:  # the directory is gone: so is its watch
                            self._wd_key.pop(wd, None)
                            self._key_wd.pop(key, None)
                            lost.add(key)
                elif fd in self._pidfd_key:
                    key = self._pidfd_key[fd]
                    exited.add(key)
                    self._drop_pid(key)  # level-triggered: report an exit once
            return Changes(frozenset(dirs), frozenset(exited), frozenset(lost), overflow)


def _close(epoll: select.epoll, fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()
    epoll.close()
