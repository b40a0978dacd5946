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

    def serve(self) -> None:
        self.listener.setblocking(False)
        listen = self.listener.fileno()
        while True:
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
        """Double fork; the grandchild becomes the monitor and answers on `conn`."""
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setsid()
                if os.fork() == 0:
                    self._become_monitor(conn, d)  # never returns
                code = 0
            except BaseException as e:
                _send(conn, _error(e))
            finally:
                os._exit(code)
        os.waitpid(pid, 0)

    def _become_monitor(self, conn: socket.socket, d: Path) -> None:
        code = 1
        answered = False
        try:
            self.listener.close()
            os.close(self.alive)
            for other, _ in self.pending.values():
                other.close()
            self.pending.clear()
            conn.setblocking(True)
            log_fd = os.open(d / "monitor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND
                             | os.O_CLOEXEC, 0o640)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            linux.set_child_subreaper()
            _set_name("kpy-monitor")
            monitor = MonitorProcess()
            monitor.setup()
            monitor.adopt(d)  # listens on <d>/monitor.sock, writes <d>/monitor.pid
            _send(conn, {"ok": True, "pid": os.getpid()})
            answered = True
            conn.close()
            monitor.serve()
            code = 0
        except BaseException as e:
            log.exception("monitor for %s failed", d)
            if not answered:
                _send(conn, _error(e))
        finally:
            with contextlib.suppress(BaseException):
                sys.stderr.flush()
            os._exit(code)


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
