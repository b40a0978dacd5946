"""The native exec driver: our libcontainer (engine.execdriver.nsexec).

Container setup and exec sessions run in forks of the pod monitor: a small, single-threaded
process with nsexec already imported, so a fork costs about a millisecond where a fresh
interpreter with these imports costs 300-900 ms on this loaded machine (measured: an exec
through a `python -S` helper took 0.7-1.0 s, through a monitor fork it takes tens of ms).
The big daemon never forks.
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import time
from pathlib import Path

from engine.errors import DeadlineExceeded, EngineError, FailedPrecondition, InvalidArgument
from engine.execdriver import cgroup_setup, codec, nsexec, seccomp
from engine.execdriver.base import Created, ExecProcess, Stdio
from engine.execdriver.spec import InitSpec
from engine.sys import caps

# Work every container would otherwise pay for in its monitor, done once when the module is
# imported (in the monitor, or in the process monitors are forked from): the InitSpec JSON
# decoder (type hints are evaluated once per class) and the RuntimeDefault BPF program.
codec.prepare(InitSpec)
seccomp.program(seccomp.runtime_default(caps.DEFAULT_CAPABILITIES))


def _read_message(sock: socket.socket, buf: bytearray, *, deadline: float,
                  fds: list[int] | None = None) -> dict[str, object]:
    """One JSON line from the sync socket; fds passed along with it go to `fds`."""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise DeadlineExceeded("container init did not report in time")
        chunk, got, _, _ = socket.recv_fds(sock, 65536, 4)
        if fds is not None:
            fds.extend(got)
        else:
            for fd in got:
                os.close(fd)
        if not chunk:
            return {}
        buf.extend(chunk)
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    msg = json.loads(line)
    assert isinstance(msg, dict)
    return msg


def _ended(pid: int) -> str:
    """Reap the setup process that reported nothing and say how it ended."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"the setup process was killed by signal {os.WTERMSIG(status)}"
    return f"the setup process exited with status {os.WEXITSTATUS(status)} without a report"


def become_helper(stdio: Stdio) -> None:
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

    def create(self, spec: InitSpec, *, bundle: Path, stdio: Stdio, timeout: float) -> Created:
        """Fork the setup process, then make the cgroup and move the container init into
        it while that init prepares its rootfs: on cgroup v1 the first migration in a while
        waits for an RCU grace period (~10 ms here), which this overlaps with the mounts."""
        if spec.seccomp is not None:
            seccomp.program(spec.seccomp)  # compiled (or found cached) before the fork
        ours, theirs = socket.socketpair()
        helper = os.fork()
        if helper == 0:  # the forked monitor: becomes the container's setup process
            code = 1
            try:
                ours.close()
                become_helper(stdio)
                code = nsexec.init(spec, theirs)
            except BaseException as e:  # say why rather than vanish ("no reason")
                with contextlib.suppress(OSError):
                    theirs.sendall(json.dumps({"error": f"{type(e).__name__}: {e}"}).encode()
                                   + b"\n")
            finally:
                os._exit(code)
        theirs.close()
        deadline = time.monotonic() + timeout
        buf = bytearray()
        console: list[int] = []  # the TTY master, made inside the container's devpts
        pid = 0
        prepared = False
        try:
            cgroup_setup.prepare(spec)
            prepared = True
            # the console (with its fd) may come in the same read as the pid: keep it
            first = _read_message(ours, buf, deadline=deadline, fds=console)
            if "pid" not in first:
                reason = first.get("error") or _ended(helper)
                helper = 0
                raise InvalidArgument(f"container init failed: {reason}")
            pid = int(str(first["pid"]))
            join_error: EngineError | None = None
            try:  # before "ready": it must never exec outside its cgroup
                cgroup_setup.join(spec, pid)
            except EngineError as e:  # the init may have failed (and exited) already: its
                join_error = e        # own report, read below, says more
            os.waitpid(helper, 0)
            helper = 0
            second = _read_message(ours, buf, deadline=deadline, fds=console)
            while second.get("console"):  # the TTY master came first, with its own line
                second = _read_message(ours, buf, deadline=deadline, fds=console)
            if not second.get("ready"):
                raise InvalidArgument(
                    f"container init failed: {second.get('error', 'exited before ready')}")
            if join_error is not None:
                raise join_error
        except BaseException:
            ours.close()
            for fd in console:
                os.close(fd)
            for victim in (helper, pid):
                if victim:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGKILL)
            if helper:
                os.waitpid(helper, 0)
            if prepared:  # a fresh cgroup of this container: nothing else is in it
                with contextlib.suppress(EngineError, OSError):
                    cgroup_setup.remove(spec)
            raise
        self._sync[spec.id] = ours
        return Created(pid=pid, console=console[0] if console else -1)

    def start(self, spec: InitSpec, *, bundle: Path, timeout: float) -> None:
        sock = self._sync.pop(spec.id, None)
        if sock is None:
            raise FailedPrecondition(f"container {spec.id} was not created by this monitor")
        with sock:
            sock.sendall(b"S")
            msg = _read_message(sock, bytearray(), deadline=time.monotonic() + timeout)
        if msg:  # EOF = the sync socket closed on exec: started
            raise InvalidArgument(f"container start failed: {msg.get('error', msg)}")

    def delete(self, spec: InitSpec, *, bundle: Path) -> None:
        sock = self._sync.pop(spec.id, None)
        if sock is not None:
            sock.close()
        cgroup_setup.remove(spec)

    def exec_in_child(self, spec: InitSpec, *, bundle: Path, pid: int,
                      process: ExecProcess) -> int:
        return nsexec.exec_in(spec, pid=pid, process=process)

    def end_exec(self, *, bundle: Path, helper_pid: int, kill: bool) -> None:
        """Nothing to do: the command is the helper's child with PDEATHSIG=SIGKILL."""
