"""Exec with a TTY in the native driver: the terminal comes from the container's own devpts.

The session helper (a fork of the monitor, already inside the container's mount namespace)
opens /dev/pts/ptmx there, so the command's terminal is /dev/pts/N of the container (`tty`
prints it, ttyname works). The session's own terminal, the pty the client handed over on
fds 0-2, stays on the helper: it is put in raw mode (the container's pty does the line
discipline) and becomes the helper's controlling terminal, so a client resize reaches the
helper as SIGWINCH, which copies the size to the container's pty (the command then gets
its own SIGWINCH). The helper relays bytes both ways until the command's side closes; this
is what runc and crun do for `exec -t` in the foreground.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
import termios
import tty
from types import FrameType

TIOCSPTLCK, TIOCGPTN = 0x40045431, 0x80045430  # <asm-generic/ioctls.h>
PTMX = "/dev/pts/ptmx"  # the devpts instance mounted in the container (newinstance)


def open_pty(ptmx: str = PTMX) -> tuple[int, int]:
    """(master, slave) of a new pty of the devpts that holds `ptmx`."""
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
        pts = os.path.join(os.path.dirname(ptmx), str(number))
        slave = os.open(pts, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except BaseException:
        os.close(master)
        raise
    return master, slave


def become_terminal_child(slave: int) -> None:
    """In the command's process: a new session whose controlling terminal is `slave`, on
    stdio."""
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def copy_size(src: int, dst: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)


def take_session_terminal(master: int) -> None:
    """In the helper: fd 0 (the client's pty) becomes our controlling terminal, raw, with
    its size mirrored onto the container's pty now and on every SIGWINCH."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    tty.setraw(0)
    copy_size(0, master)

    def resized(signum: int, frame: FrameType | None) -> None:
        copy_size(0, master)

    signal.signal(signal.SIGWINCH, resized)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def relay(master: int) -> None:
    """Copy the client's input (fd 0) to the container's pty and its output to fd 1 until
    the container side has no writer left (EIO on the master)."""
    inputs = [0, master]
    while True:
        ready, _, _ = select.select(inputs, [], [])
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                return
            _write_all(1, data)
        if 0 in ready:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            if data:
                _write_all(master, data)
            else:
                inputs.remove(0)  # the client hung up its side: output still flows
