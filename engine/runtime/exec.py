"""Exec into a running container (sync with timeout and capped output, or streaming with an
optional TTY), and port-forward into a sandbox's network namespace."""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import pty
import selectors
import socket
import struct
import subprocess
import termios
import threading
import time

from engine.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable
from engine.execdriver.base import ExecDriver, ExecProcess
from engine.execdriver.helper import helper_env
from engine.execdriver.native import NativeDriver
from engine.execdriver.runc import RuncDriver
from engine.runtime.context import Ctx
from engine.runtime.status import Status
from engine.runtime.store import ContainerRecord
from engine.shim import protocol as P
from engine.sys import linux

MAX_OUTPUT = 16 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


def _argv(ctx: Ctx, rec: ContainerRecord, args: tuple[str, ...], *, tty: bool) -> list[str]:
    if not args:
        raise InvalidArgument("exec needs a command")
    state = ctx.store.state(rec)
    if state.status is not Status.RUNNING:
        raise FailedPrecondition(f"container {rec.id} is {state.status.value}, not running")
    sandbox = ctx.store.load_sandbox(rec.sandbox_id)
    driver: ExecDriver
    if sandbox.driver == "native":
        driver = NativeDriver()
    else:
        driver = RuncDriver(binary=sandbox.runtime_binary,
                            state_root=ctx.store.sandbox_dir(rec.sandbox_id) / "runc")
    process = ExecProcess(args=args, env=rec.spec.env, cwd=rec.spec.cwd, tty=tty)
    bundle = P.bundle_dir(ctx.store.sandbox_dir(rec.sandbox_id), rec.id)
    return driver.exec_argv(rec.spec, bundle=bundle, pid=state.pid, process=process)


def exec_sync(ctx: Ctx, cid: str, args: tuple[str, ...], *, timeout: float) -> ExecResult:
    """Run to completion; output beyond 16 MiB per stream is dropped; timeout kills it.
    timeout <= 0 means no timeout."""
    rec = ctx.store.load_container(cid)
    proc = subprocess.Popen(_argv(ctx, rec, args, tty=False), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=helper_env(),
                            close_fds=True)
    assert proc.stdout is not None and proc.stderr is not None
    out = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    deadline = time.monotonic() + timeout if timeout > 0 else float("inf")
    with selectors.DefaultSelector() as sel:
        for f in (proc.stdout, proc.stderr):
            sel.register(f, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.wait()
                raise DeadlineExceeded(f"exec {args[0]} timed out after {timeout}s")
            for key, _ in sel.select(min(left, 1.0)):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                buf = out[key.fd]
                buf.extend(data[:max(MAX_OUTPUT - len(buf), 0)])
    code = proc.wait()
    return ExecResult(exit_code=code, stdout=bytes(out[proc.stdout.fileno()]),
                      stderr=bytes(out[proc.stderr.fileno()]))


@dataclasses.dataclass
class ExecSession:
    """A streaming exec: write to stdin, read stdout (and stderr unless TTY), resize, wait."""

    process: subprocess.Popen[bytes]
    stdin: int
    stdout: int
    stderr: int  # -1 with a TTY (stderr is merged into the terminal)
    tty: bool

    def resize(self, width: int, height: int) -> None:
        if not self.tty:
            raise FailedPrecondition("resize needs a TTY")
        fcntl.ioctl(self.stdout, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def wait(self, timeout: float | None = None) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired as e:
            raise DeadlineExceeded("exec session still running") from e

    def close(self) -> None:
        for fd in {self.stdin, self.stdout, self.stderr} - {-1}:
            with contextlib.suppress(OSError):
                os.close(fd)


def exec_stream(ctx: Ctx, cid: str, args: tuple[str, ...], *, tty: bool) -> ExecSession:
    rec = ctx.store.load_container(cid)
    argv = _argv(ctx, rec, args, tty=tty)
    if tty:
        master, slave = pty.openpty()
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                env=helper_env(), close_fds=True)
        os.close(slave)
        return ExecSession(process=proc, stdin=master, stdout=master, stderr=-1, tty=True)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    proc = subprocess.Popen(argv, stdin=in_r, stdout=out_w, stderr=err_w, env=helper_env(),
                            close_fds=True)
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    return ExecSession(process=proc, stdin=in_w, stdout=out_r, stderr=err_r, tty=False)


def port_forward(ctx: Ctx, sid: str, port: int, *, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:port inside the sandbox's network namespace.

    A dedicated thread enters the netns (namespaces are per thread), connects and ends; the
    socket stays in the namespace it was created in.
    """
    if not 0 < port < 65536:
        raise InvalidArgument(f"invalid port {port}")
    sandbox = ctx.store.load_sandbox(sid)
    if sandbox.config.host_network:
        netns = "/proc/self/ns/net"
    else:
        netns = str(ctx.store.sandbox_dir(sid) / "ns" / "net")
    result: list[socket.socket | BaseException] = []

    def connect() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                linux.setns(fd, linux.CLONE_NEWNET)
            finally:
                os.close(fd)
            result.append(socket.create_connection(("127.0.0.1", port), timeout=timeout))
        except BaseException as e:
            result.append(e)

    t = threading.Thread(target=connect, name=f"portforward-{sid[:12]}", daemon=True)
    t.start()
    t.join(timeout + 1)
    if not result:
        raise DeadlineExceeded(f"port-forward to {port} timed out")
    if isinstance(result[0], BaseException):
        raise Unavailable(f"port-forward to 127.0.0.1:{port} in sandbox {sid}: {result[0]}")
    result[0].settimeout(None)
    return result[0]
