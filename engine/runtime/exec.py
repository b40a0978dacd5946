"""Exec into a running container: sync (timeout, output capped at 16 MiB) or streaming (with
an optional TTY). The session runs in a fork of the pod's monitor (the daemon never forks);
we hand the monitor the session's stdio fds and keep a connection that reports the exit."""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pty
import selectors
import socket
import struct
import termios
import time

from engine.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable
from engine.execdriver.base import ExecProcess
from engine.execdriver.codec import to_jsonable
from engine.runtime.context import Ctx
from engine.runtime.status import Status
from engine.shim.client import MonitorClient

MAX_OUTPUT = 16 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclasses.dataclass(frozen=True)
class ExecHelper:
    pid: int  # the session's helper in the monitor: the parent of the command


class ExecSession:
    """A streaming exec: write to stdin, read stdout (and stderr unless TTY), resize, wait.
    kill() ends the command (and its helper, `process.pid`)."""

    def __init__(self, conn: socket.socket, *, pid: int, stdin: int, stdout: int, stderr: int,
                 tty: bool) -> None:
        self._conn = conn
        self.process = ExecHelper(pid)
        self.stdin, self.stdout, self.stderr, self.tty = stdin, stdout, stderr, tty
        self._code: int | None = None

    def resize(self, width: int, height: int) -> None:
        if not self.tty:
            raise FailedPrecondition("resize needs a TTY")
        fcntl.ioctl(self.stdout, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def wait(self, timeout: float | None = None) -> int:
        if self._code is not None:
            return self._code
        self._conn.settimeout(timeout)
        buf = b""
        try:
            while not buf.endswith(b"\n"):
                chunk = self._conn.recv(4096)
                if not chunk:
                    raise Unavailable("the pod monitor went away during the exec session")
                buf += chunk
        except TimeoutError as e:
            raise DeadlineExceeded("exec session still running") from e
        except OSError as e:  # reset: the monitor died mid-session
            raise Unavailable(f"the pod monitor went away during the exec session: {e}") from e
        self._code = int(json.loads(buf)["exit_code"])
        return self._code

    def kill(self) -> None:
        """SIGKILL the command; wait() then returns its status."""
        with contextlib.suppress(OSError):
            self._conn.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for fd in {self.stdin, self.stdout, self.stderr} - {-1}:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._conn.close()


def _start(ctx: Ctx, cid: str, args: tuple[str, ...], *, tty: bool,
           stdio: tuple[int, int, int]) -> tuple[socket.socket, int]:
    if not args:
        raise InvalidArgument("exec needs a command")
    rec = ctx.store.load_container(cid)
    state = ctx.store.state(rec)
    if state.status is not Status.RUNNING:
        raise FailedPrecondition(f"container {cid} is {state.status.value}, not running")
    process = ExecProcess(args=args, env=rec.spec.env, cwd=rec.spec.cwd, tty=tty)
    client = MonitorClient(ctx.store.sandbox_dir(rec.sandbox_id))
    conn = client.connect()
    try:
        request = {"op": "exec", "id": cid, "process": to_jsonable(process)}
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], list(stdio))
        reply = client.read_reply(conn, "exec")
    except BaseException:
        conn.close()
        raise
    return conn, int(reply["pid"])


def exec_stream(ctx: Ctx, cid: str, args: tuple[str, ...], *, tty: bool) -> ExecSession:
    if tty:
        master, slave = pty.openpty()
        try:
            conn, pid = _start(ctx, cid, args, tty=True, stdio=(slave, slave, slave))
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return ExecSession(conn, pid=pid, stdin=master, stdout=master, stderr=-1, tty=True)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        conn, pid = _start(ctx, cid, args, tty=False, stdio=(in_r, out_w, err_w))
    except BaseException:
        for fd in (in_w, out_r, err_r):
            os.close(fd)
        raise
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    return ExecSession(conn, pid=pid, stdin=in_w, stdout=out_r, stderr=err_r, tty=False)


def exec_sync(ctx: Ctx, cid: str, args: tuple[str, ...], *, timeout: float) -> ExecResult:
    """Run to completion; output beyond 16 MiB per stream is dropped; timeout kills it.
    timeout <= 0 means no timeout."""
    session = exec_stream(ctx, cid, args, tty=False)
    try:
        os.close(session.stdin)
        session.stdin = -1
        out = {session.stdout: bytearray(), session.stderr: bytearray()}
        deadline = time.monotonic() + timeout if timeout > 0 else float("inf")
        with selectors.DefaultSelector() as sel:
            for fd in out:
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    session.kill()
                    session.wait(10)
                    raise DeadlineExceeded(f"exec {args[0]} timed out after {timeout}s")
                for key, _ in sel.select(min(left, 1.0)):
                    data = os.read(key.fd, 65536)
                    if not data:
                        sel.unregister(key.fd)
                        continue
                    buf = out[key.fd]
                    buf.extend(data[:max(MAX_OUTPUT - len(buf), 0)])
        code = session.wait(max(deadline - time.monotonic(), 1.0) if timeout > 0 else None)
        return ExecResult(exit_code=code, stdout=bytes(out[session.stdout]),
                          stderr=bytes(out[session.stderr]))
    finally:
        session.close()
