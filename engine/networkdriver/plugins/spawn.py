"""Run a short helper (iptables-restore) with stdin, capturing its output: posix_spawn and
pipes, without ``subprocess`` (its import costs a plugin exec more CPU than the helper).

Only for small inputs and a small stderr: stdin is written whole before stdout is read, then
stderr (a helper that wrote over a pipe's worth, 64 KiB, to stderr before finishing
stdout would block; iptables-save/-restore write their errors at the end, and little).
"""
from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stub; signal would import enum
import os


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def run(argv: list[str], stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of ``argv`` looked up in PATH; OSError if it cannot
    start (FileNotFoundError when missing). A signal death is reported as 128 + signal."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        actions = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                   (os.POSIX_SPAWN_DUP2, err_w, 2)]
        # Python ignores SIGPIPE; a helper should not inherit that (subprocess resets it too)
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions,
                              setsigdef=(_signal.SIGPIPE,))
    except BaseException:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    try:
        try:
            if stdin:
                _write_all(in_w, stdin)
        except BrokenPipeError:
            pass  # the helper exited without reading: its status says why
        finally:
            os.close(in_w)
        out = _read_all(out_r)
        err = _read_all(err_r)
    finally:
        os.close(out_r)
        os.close(err_r)
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return (128 - code if code < 0 else code), out, err


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
