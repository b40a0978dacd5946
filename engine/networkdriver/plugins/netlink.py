"""Netlink through pyroute2, in the host netns or a pod's, without forking a helper.

A socket opened while the calling thread is inside a netns stays bound to it, so we
setns() the thread, open the socket and setns() back (setns only moves the calling
thread; safe in the engine's threads too).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

from engine.networkdriver.plugins import spec

CLONE_NEWNET = 0x40000000
IFF_PROMISC = 0x100
IFA_F_NODAD = 0x02
_LIBC: list[ctypes.CDLL] = []


def fast_import() -> None:
    """Executables only: skip pyroute2's package __init__ (it imports every module: ~250 ms)."""
    if "pyroute2" in sys.modules:
        return
    import importlib.util
    import types

    for package in ("pyroute2", "pyroute2.iproute"):
        found = importlib.util.find_spec(package)
        if found is None or found.submodule_search_locations is None:
            return
        stub = types.ModuleType(package)
        stub.__path__ = list(found.submodule_search_locations)
        sys.modules[package] = stub


def _setns(fd: int) -> None:
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    if _LIBC[0].setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def open_netns(path: str) -> int:
    """An fd of the netns at ``path``; CNIError 3 when it does not exist."""
    try:
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


def iproute(netns_fd: int | None = None) -> Any:
    """An IPRoute bound to the host netns, or to the netns of ``netns_fd``."""
    from pyroute2.iproute.linux import IPRoute

    if netns_fd is None:
        return IPRoute()
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(netns_fd)
        except OSError as exc:
            raise spec.CNIError(spec.ERR_UNKNOWN_CONTAINER, "cannot enter the network namespace",
                                str(exc)) from exc
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
        finally:
            _setns(here)
    finally:
        os.close(here)
    return IPRoute(fileno=sock.detach())


@contextlib.contextmanager
def session(netns_fd: int | None = None) -> Iterator[Any]:
    ipr = iproute(netns_fd)
    try:
        yield ipr
    finally:
        ipr.close()


def netlink_error(what: str, exc: Exception) -> spec.CNIError:
    return spec.CNIError(spec.ERR_NETLINK, what, str(exc))


def lookup(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def link_kind(ipr: Any, index: int) -> str:
    msg = ipr.get_links(index)[0]
    info = msg.get("IFLA_LINKINFO")
    return str(info.get("IFLA_INFO_KIND")) if info is not None else ""


def link_attr(ipr: Any, index: int, attr: str) -> Any:
    return ipr.get_links(index)[0].get(attr)


def is_exists(exc: Exception) -> bool:
    return getattr(exc, "code", None) == errno.EEXIST


def is_missing(exc: Exception) -> bool:
    return getattr(exc, "code", None) in (errno.ENODEV, errno.ENOENT, errno.ESRCH)
