"""The exec TTY relay of the native driver, on ptys of the test's own (no root needed)."""
from __future__ import annotations

import fcntl
import os
import select
import struct
import termios
import tty

from engine.execdriver import ttyexec


def _read(fd: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        assert select.select([fd], [], [], 10)[0], out
        out += os.read(fd, n - len(out))
    return out


def test_relay_copies_both_ways_until_the_command_side_closes() -> None:
    cm, cs = os.openpty()  # the "container's" pty
    km, ks = os.openpty()  # the client's pty, handed to the session helper on 0-2
    for fd in (cs, ks):
        tty.setraw(fd)
    child = os.fork()
    if child == 0:  # the session helper
        code = 1
        try:
            os.close(cs)
            os.close(km)
            os.dup2(ks, 0)
            os.dup2(ks, 1)
            ttyexec.relay(cm)
            code = 0
        finally:
            os._exit(code)
    os.close(ks)
    os.close(cm)
    try:
        os.write(km, b"typed")  # client input reaches the command's terminal
        assert _read(cs, 5) == b"typed"
        os.write(cs, b"printed")  # the command's output reaches the client
        assert _read(km, 7) == b"printed"
        os.close(cs)  # the command is gone: the relay ends
        cs = -1
        _, status = os.waitpid(child, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        for fd in (km, cs):
            if fd >= 0:
                os.close(fd)


def test_copy_size() -> None:
    am, a = os.openpty()
    bm, b = os.openpty()
    try:
        fcntl.ioctl(a, termios.TIOCSWINSZ, struct.pack("HHHH", 27, 93, 0, 0))
        ttyexec.copy_size(a, bm)
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(b, termios.TIOCGWINSZ, b"\0" * 8))
        assert (rows, cols) == (27, 93)
    finally:
        for fd in (am, a, bm, b):
            os.close(fd)
