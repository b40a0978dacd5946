"""A pod's network namespace, made by the daemon itself so that CNI ADD can start at once.

Why here and not in the pod monitor (where the IPC, UTS and PID namespaces are made): the
network is the slow part of RunPodSandbox (CNI ADD: the plugins, then portmap's iptables
probes), and it can only begin once the namespace exists. Made here, the namespace is ready
~1 ms into RunPodSandbox (a new netns costs ~1 ms of kernel time on this machine), and
CNI ADD runs while the monitor is spawned and makes the other namespaces, instead of after.

How: on a thread of its own (a network namespace belongs to a thread, so no other thread of
the daemon ever sees it), unshare(CLONE_NEWNET), bring `lo` up, set the pod's `net.*`
sysctls (before CNI runs, as the monitor did), bind-mount /proc/thread-self/ns/net at the
target, setns back. The thread then ends: even a failed setns back cannot leak the namespace
into other work. containerd pins its pod network namespaces the same way.

Not for pods in their own user namespace: their network namespace must be owned by that
user namespace, which only the monitor makes (engine.execdriver.userns).
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from engine.errors import InvalidArgument, Unavailable
from engine.execdriver.nsexec import loopback_up, write_sysctls
from engine.sys import linux


def _make_here(target: Path, sysctls: Mapping[str, str]) -> None:
    """On the calling thread, which must be one of its own (see the module docstring)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.unshare(linux.CLONE_NEWNET)
        try:
            loopback_up()
            try:
                write_sysctls(sysctls)
            except OSError as e:  # no such sysctl, or a value the kernel refuses
                raise ValueError(f"sysctls {dict(sysctls)}: {e}") from e
            with open(target, "a"):
                pass
            linux.mount("/proc/thread-self/ns/net", str(target), "", linux.MS_BIND)
        finally:
            linux.setns(home, linux.CLONE_NEWNET)
    finally:
        os.close(home)


def make(target: Path, *, sysctls: Mapping[str, str]) -> None:
    """A new network namespace, `lo` up and `sysctls` (all `net.*`) set, pinned by a bind
    mount at `target` (a file created if missing). Nothing is left mounted on failure."""
    bad = sorted(k for k in sysctls if not k.startswith("net."))
    if bad:
        raise InvalidArgument(f"not network sysctls: {', '.join(bad)}")
    failure: list[BaseException] = []

    def run() -> None:
        try:
            _make_here(target, sysctls)
        except BaseException as e:  # handed to the caller's thread
            failure.append(e)

    worker = threading.Thread(target=run, name=f"netns-{target.parent.parent.name[:12]}")
    worker.start()
    worker.join()
    if failure:
        with contextlib.suppress(OSError):
            linux.umount2(str(target), linux.MNT_DETACH)
        e = failure[0]
        if isinstance(e, ValueError):
            raise InvalidArgument(f"pod network namespace: {e}") from e
        if isinstance(e, OSError):
            raise Unavailable(f"pod network namespace: {e}") from e
        raise e
