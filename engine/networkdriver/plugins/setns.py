"""Network namespaces by fd: one opened by path (or the one the plugin's caller passed), and
setns(2) of the calling thread into it: ``os.setns`` from Python 3.12, libc's through
``_ctypes`` before (``ctypes`` costs a plugin exec ~5 ms of CPU)."""
from __future__ import annotations

import _thread
import os

from engine.networkdriver.plugins import spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

CLONE_NEWNET = 0x40000000


def _libc_setns() -> Callable[[int, int], int]:
    """libc's setns as a foreign function returning int, errno kept for us."""
    import _ctypes

    class Fn(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO

    class Libc:
        _handle = _ctypes.dlopen(None, os.RTLD_NOW)  # type: ignore[arg-type]  # NULL: ourselves

    fn: Callable[[int, int], int] = Fn(("setns", Libc()))  # type: ignore[arg-type]  # duck
    return fn


_SETNS: list[Callable[[int, int], int]] = []


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace of ``fd``; OSError on failure."""
    native = getattr(os, "setns", None)  # Python 3.12+
    if native is not None:
        native(fd, CLONE_NEWNET)
        return
    if not _SETNS:
        _SETNS.append(_libc_setns())
    if _SETNS[0](fd, CLONE_NEWNET) != 0:
        import _ctypes

        err = _ctypes.get_errno()
        raise OSError(err, os.strerror(err))


_PASSED = _thread._local()  # per thread: (path, fd) of a netns the caller opened for us


def pass_netns(path: str, fd: int | None) -> None:
    """For the calling thread, until called again: ``open_netns(path)`` opens ``fd`` (a netns
    opened by the plugin's caller, passed to the CNI agent) instead of resolving ``path``."""
    _PASSED.netns = None if fd is None else (path, fd)


def open_netns(path: str) -> int:
    """An fd of the netns at ``path``; CNIError 3 when it does not exist."""
    passed = getattr(_PASSED, "netns", None)
    try:
        if passed is not None and passed[0] == path:
            fd = os.dup(passed[1])
        else:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise spec.CNIError(spec.ERR_UNKNOWN_CONTAINER, "network namespace does not exist",
                            path) from exc
    try:
        st = os.fstat(fd)
        if st.st_size != 0 or not os.path.exists(f"/proc/self/fd/{fd}"):
            raise spec.CNIError(spec.ERR_UNKNOWN_CONTAINER, "not a network namespace", path)
    except BaseException:
        os.close(fd)
        raise
    return fd
