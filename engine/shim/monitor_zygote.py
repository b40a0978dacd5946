"""The monitor zygote: one small process that forks every pod's monitor.

    python -S -B -m engine.shim.monitor_zygote <listening fd> <alive fd>

Why a zygote: a monitor used to be a fresh interpreter per pod, which cost ~9.4 MiB PSS per
running pod and ~210 ms of interpreter start and imports on every RunPodSandbox. The zygote
pays that once. It imports everything a monitor can ever need (the imports below and
`preload()`; nothing may be imported lazily after the fork), collects, fills the holes of
the allocator's pools (`plug_pools()`), then `gc.freeze()`s its heap: a collection in a
monitor never walks (and so never writes to) the objects it shares with the zygote, and
the pages stay shared copy-on-write between the zygote and every monitor.

Measured (bench/runtime/memory.py and run.py, docs/benchmarks.md, 2 cores, load ~6):
with one monitor process per pod, 3.4 MiB PSS per pod at 110 pods for the zygote and all
monitors together, where containerd's runc shims take 4.5 MiB (0.6 MiB with 8 pods per
monitor process, engine.shim.monitor); RunPodSandbox without network 31 ms p50 instead of
248 ms. What is left is mostly pages a monitor writes once and so copies: CPython 3.11
writes the reference count of every object it touches (functions, code, dicts), and the
fork itself dirties ~0.8 MiB; disabling the monitor's collector changed nothing
measurable, so it stays on.

A forked monitor process hosts up to K pods (engine.shim.monitor says why and what that
costs); the zygote holds no pod state at all: its death hurts no pod.

A spawn is a double fork: the first child calls setsid and forks the monitor, then exits, so
the monitor is re-parented away from the zygote (it outlives the zygote and engined, like
the daemonized monitor it replaces); the monitor becomes a child subreaper, drops every fd
of the zygote, points its stderr at the first pod's <dir>/monitor.log and listens on
<dir>/monitor.sock.

Lifetime: the zygote is engined's child (engine.shim.spawner starts it) and exits when the
pipe from engined reaches EOF, i.e. when engined exits, `kill -9` included. Not
PR_SET_PDEATHSIG: that signal fires when the *thread* that forked the child exits, and the
CRI server runs RunPodSandbox on pool threads. engined binds the socket and hands over the
listening fd, so requests queue in the backlog while the zygote still imports.

A spare monitor: when idle, the zygote forks the next monitor ahead of need (double fork
and process set-up done), which waits for its first sandbox on a socket pair with the
zygote; a spawn hands it the sandbox dir and the client's connection, so a RunPodSandbox
that needs a new monitor process does not wait for the forks. A spare that is gone is
replaced by a fork on the spot; a spare exits when the zygote does (EOF on the pair).

Protocol: one request per connection, one JSON object per line.
  {"op": "spawn", "dir": <absolute sandbox dir>, "pods_per_monitor": K}: the *monitor*
      answers {"ok": true, "pid"} once it listens (the zygote never waits on a monitor:
      spawns proceed concurrently);
  {"op": "ping"} -> {"ok": true, "pid"}; {"op": "modules"} -> {"ok": true, "modules": [...]};
  errors: {"ok": false, "kind": <EngineError subclass>, "error"}, as the monitor's.
"""
from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import select
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Everything a monitor may run: the monitor and its sessions, both exec drivers (and what
# runc/crun need: subprocess, the OCI config), nsexec, seccomp, the cgroup managers.
import engine.cgroups.detect
import engine.execdriver.native
import engine.execdriver.runc
import engine.shim.drivers
import engine.shim.sessions
from engine.errors import EngineError, InvalidArgument
from engine.execdriver import codec
from engine.execdriver.base import ExecProcess
from engine.execdriver.spec import InitSpec
from engine.runtime.state import ContainerState
from engine.shim import protocol as P
from engine.shim.monitor import MonitorProcess, pods_per_monitor, sandbox_dir
from engine.sys import linux

log = logging.getLogger("engine.shim.monitor_zygote")
MAX_REQUEST = 64 * 1024


def _send(conn: socket.socket, msg: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        conn.settimeout(5.0)
        conn.sendall(json.dumps(msg).encode() + b"\n")


def _error(e: BaseException) -> dict[str, Any]:
    kind = type(e).__name__ if isinstance(e, EngineError) else "EngineError"
    return {"ok": False, "kind": kind, "error": str(e) if isinstance(e, EngineError)
            else f"{type(e).__name__}: {e}"}


def _discard_input(conn: socket.socket, *, limit: int = 1 << 20) -> None:
    with contextlib.suppress(OSError):
        while limit > 0 and (data := conn.recv(65536, socket.MSG_DONTWAIT)):
            limit -= len(data)


def _set_name(name: str) -> None:
    """The process name (`ps -o comm`, /proc/<pid>/comm); the cmdline stays the zygote's."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as f:
        f.write(name)


class Zygote:
    def __init__(self, listener: socket.socket, alive: int) -> None:
        self.listener = listener
        self.alive = alive  # read end of a pipe from engined: EOF = engined is gone
        self.pending: dict[int, tuple[socket.socket, bytearray]] = {}  # by fd
        self.spare: socket.socket | None = None  # our end of the pair to the spare monitor

    def serve(self) -> None:
        self.listener.setblocking(False)
        listen = self.listener.fileno()
        while True:
            if self.spare is None and not self.pending:
                self._make_spare()  # when idle: a request never waits for it
            ready, _, _ = select.select([listen, self.alive, *self.pending], [], [])
            for fd in ready:
                if fd == self.alive:
                    if not os.read(self.alive, 64):
                        log.info("engined is gone; the zygote exits")
                        return
                elif fd == listen:
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        conn, _ = self.listener.accept()
                        conn.setblocking(False)
                        self.pending[conn.fileno()] = (conn, bytearray())
                elif fd in self.pending:
                    self._readable(fd)

    def _readable(self, fd: int) -> None:
        conn, buf = self.pending[fd]
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        buf.extend(data)
        if b"\n" not in buf and data and len(buf) <= MAX_REQUEST:
            return
        del self.pending[fd]
        try:
            if b"\n" not in buf:
                raise InvalidArgument(
                    f"a zygote request is one JSON line of at most {MAX_REQUEST} bytes" if data
                    else "a zygote request is one JSON line; the connection ended without one")
            self._handle(conn, bytes(buf).partition(b"\n")[0])
        except EngineError as e:
            _discard_input(conn)  # unread input would turn our close into a reset
            _send(conn, _error(e))
        finally:
            conn.close()

    def _handle(self, conn: socket.socket, line: bytes) -> None:
        try:
            req = json.loads(line)
        except ValueError as e:
            raise InvalidArgument(f"a zygote request is a JSON object: {e}") from e
        if not isinstance(req, dict):
            raise InvalidArgument("a zygote request is a JSON object")
        op = req.get("op")
        if op == "spawn":
            pods_per_monitor(req)  # checked here, used by the spawner's later adopts
            self._spawn(conn, sandbox_dir(req))
        elif op == "ping":
            _send(conn, {"ok": True, "pid": os.getpid()})
        elif op == "modules":
            _send(conn, {"ok": True, "modules": sorted(sys.modules)})
        else:
            raise InvalidArgument(f"unknown zygote op {op!r}")

    def _spawn(self, conn: socket.socket, d: Path) -> None:
        """The spare monitor takes the sandbox, else a double fork; either answers on
        `conn`."""
        if self._hand_to_spare(conn, d):
            return
        self._detached(lambda: self._become_monitor(conn, d), on_error=conn)

    def _detached(self, become: Callable[[], None], *,
                  on_error: socket.socket | None = None) -> None:
        """Double fork: the grandchild runs `become` (which never returns), re-parented
        away from us in a session of its own."""
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setsid()
                if os.fork() == 0:
                    become()
                code = 0
            except BaseException as e:
                if on_error is not None:
                    _send(on_error, _error(e))
            finally:
                os._exit(code)
        os.waitpid(pid, 0)

    # -- the spare monitor -----------------------------------------------------------------
    # A monitor forked ahead of need, its process set up, waiting for its first sandbox
    # (a fork and a process set-up less on the RunPodSandbox that takes it). It waits on a
    # socket pair with us: one line {"dir"} with the client's connection passed along (it
    # answers there, as any new monitor does), or EOF when we exit, and it exits too.
    def _make_spare(self) -> None:
        # datagram boundaries: the one line arrives whole, with the connection's fd
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._detached(lambda: self._become_spare(theirs, ours))
        finally:
            theirs.close()
        self.spare = ours

    def _hand_to_spare(self, conn: socket.socket, d: Path) -> bool:
        spare, self.spare = self.spare, None
        if spare is None:
            return False
        try:
            socket.send_fds(spare, [json.dumps({"dir": str(d)}).encode() + b"\n"],
                            [conn.fileno()], socket.MSG_NOSIGNAL)
            return True
        except OSError as e:  # it died: fork one for this sandbox
            log.warning("the spare monitor is gone (%s); forking one", e)
            return False
        finally:
            spare.close()

    def _leave_zygote(self) -> None:
        """In a new monitor: drop every fd of the zygote, become a subreaper."""
        self.listener.close()
        os.close(self.alive)
        for other, _ in self.pending.values():
            other.close()
        self.pending.clear()
        if self.spare is not None:
            self.spare.close()
            self.spare = None
        linux.set_child_subreaper()
        _set_name("kpy-monitor")

    def _become_spare(self, handoff: socket.socket, zygote_end: socket.socket) -> None:
        code = 1
        conn: socket.socket | None = None
        try:
            zygote_end.close()  # else we would never see the zygote's EOF
            self._leave_zygote()
            monitor = MonitorProcess()
            monitor.setup()
            msg, fds, _, _ = socket.recv_fds(handoff, MAX_REQUEST, 1)
            handoff.close()
            for fd in fds:
                os.set_inheritable(fd, False)
            if not fds:  # EOF: the zygote is gone, and no sandbox came
                os._exit(0)
            conn = socket.socket(fileno=fds[0])
            self._serve_first_pod(monitor, conn, Path(json.loads(msg)["dir"]))
            code = 0
        except BaseException as e:
            log.exception("the spare monitor failed")
            if conn is not None:
                _send(conn, _error(e))
        finally:
            with contextlib.suppress(BaseException):
                sys.stderr.flush()
            os._exit(code)

    def _become_monitor(self, conn: socket.socket, d: Path) -> None:
        code = 1
        try:
            self._leave_zygote()
            monitor = MonitorProcess()
            monitor.setup()
            self._serve_first_pod(monitor, conn, d)
            code = 0
        except BaseException as e:
            log.exception("monitor for %s failed", d)
            _send(conn, _error(e))
        finally:
            with contextlib.suppress(BaseException):
                sys.stderr.flush()
            os._exit(code)

    @staticmethod
    def _serve_first_pod(monitor: MonitorProcess, conn: socket.socket, d: Path) -> None:
        """Log to <d>/monitor.log, serve <d>, answer on `conn`, serve until the last pod is
        gone. An error before the answer propagates (the caller sends it)."""
        conn.setblocking(True)
        log_fd = os.open(d / "monitor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND
                         | os.O_CLOEXEC, 0o640)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        monitor.adopt(d)  # listens on <d>/monitor.sock, writes <d>/monitor.pid
        _send(conn, {"ok": True, "pid": os.getpid()})
        conn.close()  # an error from here on goes to the log only (a send on it fails)
        monitor.serve()


def preload() -> None:
    """Work every monitor would otherwise repeat after the fork, done once here: each page
    a monitor writes becomes its private copy."""
    engine.cgroups.detect.manager()
    for cls in (P.MonitorContainer, InitSpec, ExecProcess, ContainerState):
        codec.prepare(cls)  # the decoders (type hints evaluated) the monitor uses
    # (engine.execdriver.native compiles the RuntimeDefault seccomp program on import)
    json.loads(json.dumps({"warm": [1, 2.5, None, True]}))


_STATS_LINE = re.compile(r"^\s*\d+\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s*$")


def pool_stats() -> list[tuple[int, int]]:
    """(block size, free blocks in partly used pools) per size class of Python's
    small-object allocator, from sys._debugmallocstats (which writes to the C stderr)."""
    fd = os.memfd_create("mallocstats")
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(fd, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    with os.fdopen(fd, "rb") as f:
        f.seek(0)
        lines = f.read().decode(errors="replace").splitlines()
    return [(int(m[1]), int(m[2])) for line in lines if (m := _STATS_LINE.match(line))]


def plug_pools() -> list[object]:
    """Fill the free blocks of every partly used pool of the small-object allocator with
    objects kept for good. A monitor's allocations then go to pools of its own instead of
    scattering over pages it shares with the zygote and every other monitor (each such
    write copies a page): measured ~120 KiB less private memory per monitor."""
    wanted = pool_stats()
    keep: list[object] = [None] * sum(avail for _, avail in wanted)
    i = 0
    for size, avail in wanted:
        for _ in range(avail):
            if size >= 48:
                keep[i] = bytes(size - 33)  # a bytes object takes 33 bytes + its length
            elif size == 32:
                keep[i] = (1 << 40) + i  # a two-digit int: 32 bytes
            i += 1
    return keep


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m engine.shim.monitor_zygote <listening fd> <alive fd>",
              file=sys.stderr)
        return 2
    listener = socket.socket(fileno=int(argv[0]))
    alive = int(argv[1])
    os.set_inheritable(listener.fileno(), False)
    os.set_inheritable(alive, False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s monitor %(message)s",
                        stream=sys.stderr)
    _set_name("kpy-zygote")
    preload()
    gc.collect()
    plugs = plug_pools()  # and nothing is freed after: no new holes before the forks
    gc.freeze()
    Zygote(listener, alive).serve()
    del plugs
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
