"""The native exec driver: our libcontainer (engine.execdriver.nsexec).

Container setup runs in a fork of the pod monitor: a small, single-threaded process with
nsexec already imported, so a fork costs about a millisecond where a fresh interpreter costs
100-300 ms on this machine (measured; see bench/runtime). The big daemon never forks: exec
sessions it starts run nsexec as a fresh `python -S` helper (engine.execdriver.helper).
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import time
from pathlib import Path

from engine.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument
from engine.execdriver import cgroup_setup, nsexec
from engine.execdriver.base import ExecProcess, Stdio
from engine.execdriver.codec import dumps, to_jsonable, write_atomic
from engine.execdriver.helper import python_argv
from engine.execdriver.spec import InitSpec

SPEC_FILE = "init.json"


def _read_message(sock: socket.socket, buf: bytearray, deadline: float) -> dict[str, object]:
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise DeadlineExceeded("container init did not report in time")
        chunk = sock.recv(65536)
        if not chunk:
            return {}
        buf.extend(chunk)
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    msg = json.loads(line)
    assert isinstance(msg, dict)
    return msg


def _become_helper(stdio: Stdio) -> None:
    """In the forked child: the container's stdio on 0-2, default signal dispositions."""
    os.dup2(stdio.stdin, 0)
    os.dup2(stdio.stdout, 1)
    os.dup2(stdio.stderr, 2)
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGPIPE, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


class NativeDriver:
    name = "native"

    def __init__(self) -> None:
        self._sync: dict[str, socket.socket] = {}

    def create(self, spec: InitSpec, *, bundle: Path, stdio: Stdio, timeout: float) -> int:
        cgroup_setup.prepare(spec)
        write_atomic(bundle / SPEC_FILE, dumps(spec))  # what exec sessions join with
        ours, theirs = socket.socketpair()
        helper = os.fork()
        if helper == 0:  # the forked monitor: becomes the container's setup process
            code = 1
            try:
                ours.close()
                _become_helper(stdio)
                code = nsexec.init(spec, theirs)
            finally:
                os._exit(code)
        theirs.close()
        deadline = time.monotonic() + timeout
        buf = bytearray()
        try:
            first = _read_message(ours, buf, deadline)
            os.waitpid(helper, 0)
            helper = 0
            if "pid" not in first:
                raise InvalidArgument(f"container init failed: {first.get('error', 'no reason')}")
            pid = int(str(first["pid"]))
            second = _read_message(ours, buf, deadline)
            if not second.get("ready"):
                raise InvalidArgument(
                    f"container init failed: {second.get('error', 'exited before ready')}")
        except BaseException:
            ours.close()
            if helper:
                os.kill(helper, signal.SIGKILL)
                os.waitpid(helper, 0)
            raise
        self._sync[spec.id] = ours
        return pid

    def start(self, spec: InitSpec, *, bundle: Path, timeout: float) -> None:
        sock = self._sync.pop(spec.id, None)
        if sock is None:
            raise FailedPrecondition(f"container {spec.id} was not created by this monitor")
        with sock:
            sock.sendall(b"S")
            msg = _read_message(sock, bytearray(), time.monotonic() + timeout)
        if msg:  # EOF = the sync socket closed on exec: started
            raise InvalidArgument(f"container start failed: {msg.get('error', msg)}")

    def delete(self, spec: InitSpec, *, bundle: Path) -> None:
        sock = self._sync.pop(spec.id, None)
        if sock is not None:
            sock.close()
        cgroup_setup.remove(spec)

    def exec_argv(self, spec: InitSpec, *, bundle: Path, pid: int,
                  process: ExecProcess) -> list[str]:
        return python_argv("engine.execdriver.nsexec", "exec", str(bundle / SPEC_FILE),
                           str(pid), json.dumps(to_jsonable(process)))
