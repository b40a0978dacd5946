"""setns(2) for the calling thread, into a network namespace: ``os.setns`` from Python 3.12,
libc's through ``_ctypes`` before (``ctypes`` costs a plugin exec ~5 ms of CPU)."""
from __future__ import annotations

import os

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
