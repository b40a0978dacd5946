"""engine.runtime.netns.make: a new network namespace pinned at a path, `lo` up, the net.*
sysctls set, made on a thread of its own (the caller's namespace never changes), and nothing
left mounted when it fails."""
from __future__ import annotations

import fcntl
import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.runtime import netns
from engine.runtime.sandbox import mounts_under
from engine.sys import linux
from tests.harness.prereq import need_root

pytestmark = pytest.mark.integration


@pytest.fixture
def ns_dir(tmp_path: Path) -> Iterator[Path]:
    need_root()
    yield tmp_path
    for point in mounts_under(tmp_path):
        linux.umount2(point, linux.MNT_DETACH)


def _inside(target: Path, sysctl: str) -> tuple[bool, str]:
    """(lo is up, the sysctl's value) as a thread that joined `target` sees them."""
    out: list[tuple[bool, str]] = []

    def run() -> None:
        fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(fd, linux.CLONE_NEWNET)  # this thread only; it ends right after
        finally:
            os.close(fd)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            req = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), 0x8913, req))[1]
        with open(f"/proc/sys/{sysctl.replace('.', '/')}") as f:
            out.append((bool(flags & 1), f.read().strip()))

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return out[0]


def test_a_new_namespace_with_lo_up_and_the_sysctls(ns_dir: Path) -> None:
    ours = os.stat("/proc/thread-self/ns/net").st_ino
    target = ns_dir / "net"
    netns.make(target, sysctls={"net.ipv4.ip_unprivileged_port_start": "80"})
    assert os.stat("/proc/thread-self/ns/net").st_ino == ours  # never moved
    assert os.stat(target).st_ino != ours  # pinned: a namespace of its own
    assert mounts_under(ns_dir) == [str(target)]
    assert _inside(target, "net.ipv4.ip_unprivileged_port_start") == (True, "80")


def test_a_sysctl_the_kernel_lacks_fails_and_leaves_no_mount(ns_dir: Path) -> None:
    with pytest.raises(InvalidArgument, match="no_such_knob"):
        netns.make(ns_dir / "net", sysctls={"net.ipv4.no_such_knob": "1"})
    assert mounts_under(ns_dir) == []


def test_only_network_sysctls(ns_dir: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"kernel\.shmmax"):
        netns.make(ns_dir / "net", sysctls={"kernel.shmmax": "1"})
    assert not (ns_dir / "net").exists()
