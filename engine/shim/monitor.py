"""The pod monitor: one small process per sandbox, forked by engine.shim.monitor_zygote.

Why one per pod and not one supervisor: a pod is the unit the kubelet creates and destroys,
so a crash or a hung container start hurts one pod only; its lifetime is the pod's (exit =
pod gone); and `kill -9` of a monitor has a blast radius the runtime can clean up from the
pod's cgroup. The cost of a process per pod is kept low by forking every monitor from one
zygote that has imported everything (see engine.shim.monitor_zygote for the figures).

It is detached from the daemon (double fork, own session) and is a child subreaper, so every
container init is its descendant: it owns their stdio, writes their CRI logs, reaps them and
records the exit in <dir>/containers/<id>/state.json. Being small and single-threaded, it
also forks the work that must not come from the big daemon: the pod's namespaces, native
container setup, exec sessions (engine.shim.sessions). It never restarts; native containers
die with it (PDEATHSIG), and the runtime treats a dead monitor as "all its containers exited"
and kills what is left through the cgroups.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from engine.errors import EngineError, FailedPrecondition, InvalidArgument, NotFound
from engine.execdriver import nsexec, userns
from engine.execdriver.codec import from_jsonable
from engine.runtime.state import ContainerState, read_state, write_state
from engine.runtime.status import Status
from engine.shim import protocol as P
from engine.shim.drivers import driver_for
from engine.shim.procs import Fds, Proc, exit_reason, open_stdio
from engine.shim.sessions import Sessions
from engine.shim.specs import init_spec

log = logging.getLogger("engine.shim.monitor")
CREATE_TIMEOUT = 30.0


class Monitor:
    def __init__(self, sandbox_dir: Path) -> None:
        self.dir = sandbox_dir
        self.sel = selectors.DefaultSelector()
        self.procs: dict[str, Proc] = {}
        self.by_pid: dict[int, str] = {}
        self.running = True
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sessions = Sessions(self.sel, self.procs)

    # -- setup and loop -------------------------------------------------------------------
    def listen(self) -> None:
        path = self.dir / P.SOCKET
        if path.exists():
            path.unlink()
        os.chdir(self.dir)  # bind relatively: run dirs exceed the 108-byte sun_path limit
        self.listener.bind(P.SOCKET)
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, ("accept", None))
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.sel.register(r, selectors.EVENT_READ, ("signal", None))

    def serve(self) -> None:
        while self.running:
            for key, _ in self.sel.select(timeout=1.0):
                kind, arg = key.data
                if kind == "accept":
                    conn, _ = self.listener.accept()
                    conn.setblocking(True)
                    self.sel.register(conn, selectors.EVENT_READ, ("client", bytearray()))
                elif kind == "client":
                    self._client(key.fileobj, arg)  # type: ignore[arg-type]
                elif kind == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(key.fd, 4096)
                elif kind == "output":
                    self._output(key.fd, arg)
                elif kind == "attach":
                    cid, reader = arg
                    self.sessions.attached_input(key.fileobj, cid,  # type: ignore[arg-type]
                                                 reader=reader)
                elif kind == "exec":
                    self.sessions.exec_input(key.fileobj, arg)  # type: ignore[arg-type]
            self._reap()
        self.sel.close()

    def _client(self, conn: socket.socket, buf: bytearray) -> None:
        try:
            chunk, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        except OSError:
            chunk, fds = b"", []
        if not chunk:
            self.sel.unregister(conn)
            conn.close()
            for fd in fds:
                os.close(fd)
            return
        buf.extend(chunk)
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            try:
                req = json.loads(line)  # once: a create carries the whole spec
            except ValueError:
                req = None
            if isinstance(req, dict) and self.sessions.take(conn, req, rest=bytes(buf), fds=fds):
                return
            for fd in fds:
                os.close(fd)
            fds = []
            reply = self._dispatch(req)
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")

    def _dispatch(self, req: Any) -> dict[str, Any]:
        try:
            if not isinstance(req, dict):
                raise InvalidArgument("a monitor request is one JSON object per line")
            op = req.get("op")
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                raise InvalidArgument(f"unknown monitor op {op!r}")
            result = handler(req)
            return {"ok": True, **(result or {})}
        except EngineError as e:
            return {"ok": False, "kind": type(e).__name__, "error": str(e)}
        except Exception as e:
            log.exception("monitor op failed")
            return {"ok": False, "kind": "EngineError", "error": f"{type(e).__name__}: {e}"}

    # -- operations -----------------------------------------------------------------------
    def op_ping(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid()}

    def op_modules(self, req: dict[str, Any]) -> dict[str, Any]:
        """The modules loaded here: the zygote must have imported them all before forking."""
        return {"modules": sorted(sys.modules)}

    def op_namespaces(self, req: dict[str, Any]) -> dict[str, Any]:
        """Make the pod's namespaces in a fork of this (small) process."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                nsexec.sandbox(str(self.dir / "ns"), hostname=str(req.get("hostname", "")),
                               sysctls={str(k): str(v)
                                        for k, v in dict(req.get("sysctls", {})).items()},
                               share_pid=bool(req.get("share_pid")),
                               cgroup_path=str(req.get("cgroup_path", "")),
                               uid_mappings=userns.mappings(req.get("uid_mappings")),
                               gid_mappings=userns.mappings(req.get("gid_mappings")))
                code = 0
            except BaseException as e:
                os.write(w, f"{type(e).__name__}: {e}".encode())
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            error = f.read().decode(errors="replace")
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise InvalidArgument(f"sandbox namespaces: {error or status}")
        return {}

    def _proc(self, req: dict[str, Any]) -> Proc:
        proc = self.procs.get(str(req.get("id")))
        if proc is None:
            raise NotFound(f"container {req.get('id')} is not known to this monitor")
        return proc

    def op_create(self, req: dict[str, Any]) -> dict[str, Any]:
        meta = from_jsonable(P.MonitorContainer, req["container"])
        spec = init_spec(req["spec"])
        if meta.id in self.procs:
            raise FailedPrecondition(f"container {meta.id} already exists")
        bundle = P.bundle_dir(self.dir, meta.id)
        bundle.mkdir(parents=True, exist_ok=True)
        driver = driver_for(meta, self.dir)
        stdio, ours = open_stdio(meta)
        created_at = time.time_ns()
        try:
            created = driver.create(spec, bundle=bundle, stdio=stdio, timeout=CREATE_TIMEOUT)
        except BaseException:
            ours.close_all()
            raise
        finally:
            stdio_fds = {stdio.stdin, stdio.stdout, stdio.stderr}
            for fd in stdio_fds:
                os.close(fd)
        pid = created.pid
        if meta.tty:
            if created.console < 0:
                os.kill(pid, signal.SIGKILL)
                raise FailedPrecondition(f"driver {meta.driver} made no TTY for {meta.id}")
            ours = Fds(streams={created.console: "stdout"}, pty=created.console,
                       stdin=os.dup(created.console) if meta.stdin else -1)
        proc = Proc(meta=meta, spec=spec, driver=driver, bundle=bundle, pid=pid, fds=ours,
                    log_path=Path(meta.log_path))
        proc.oom_baseline = proc.oom_kills()
        self.procs[meta.id] = proc
        self.by_pid[pid] = meta.id
        for fd, stream in ours.outputs():
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, ("output", (meta.id, stream)))
        self._save(proc, ContainerState(status=Status.CREATED, pid=pid, created_at=created_at))
        return {"pid": pid}

    def op_start(self, req: dict[str, Any]) -> dict[str, Any]:
        proc = self._proc(req)
        state = read_state(P.state_path(self.dir, proc.meta.id))
        if not state.status.can_start():
            raise FailedPrecondition(f"container {proc.meta.id} is {state.status.value}")
        proc.open_log()
        started = time.time_ns()
        try:
            proc.driver.start(proc.spec, bundle=proc.bundle, timeout=CREATE_TIMEOUT)
        except EngineError as e:
            self._save(proc, state.exited(exit_code=128, reason="StartError", message=str(e),
                                          at=time.time_ns()))
            raise
        current = read_state(P.state_path(self.dir, proc.meta.id))
        if current.status is Status.CREATED:  # it may already have exited and been reaped
            self._save(proc, dataclasses.replace(current, status=Status.RUNNING,
                                                 started_at=started))
        return {}

    def op_kill(self, req: dict[str, Any]) -> dict[str, Any]:
        proc = self._proc(req)
        if proc.exited:
            return {}
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, int(req.get("signal", signal.SIGKILL)))
        return {}

    def op_reopen_log(self, req: dict[str, Any]) -> dict[str, Any]:
        proc = self._proc(req)
        if proc.log is not None:
            proc.log.reopen()
        return {}

    def op_delete(self, req: dict[str, Any]) -> dict[str, Any]:
        proc = self._proc(req)
        if not proc.exited:
            if proc.started:
                raise FailedPrecondition(f"container {proc.meta.id} is still running")
            os.kill(proc.pid, signal.SIGKILL)  # created, never started: discard it
            self._wait_exit(proc)
        self._forget(proc)
        return {}

    def op_shutdown(self, req: dict[str, Any]) -> dict[str, Any]:
        for proc in list(self.procs.values()):
            if not proc.exited:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                self._wait_exit(proc)
            self._forget(proc)
        self.running = False
        return {}

    # -- processes ------------------------------------------------------------------------
    def _wait_exit(self, proc: Proc) -> None:
        deadline = time.monotonic() + 10
        while not proc.exited and time.monotonic() < deadline:
            self._reap(block_pid=proc.pid)

    def _forget(self, proc: Proc) -> None:
        for fd, _ in proc.fds.outputs():
            self._drain(proc, fd, final=True)
        proc.driver.delete(proc.spec, bundle=proc.bundle)
        proc.fds.close_all()
        if proc.log is not None:
            proc.log.close()
        self.procs.pop(proc.meta.id, None)
        self.by_pid.pop(proc.pid, None)

    def _output(self, fd: int, arg: tuple[str, str]) -> None:
        proc = self.procs.get(arg[0])
        if proc is not None:
            self._drain(proc, fd, final=False)

    def _drain(self, proc: Proc, fd: int, *, final: bool) -> None:
        stream = proc.fds.stream_of(fd)
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self.sel.unregister(fd)
                proc.fds.closed(fd)
                if proc.log is not None and stream is not None:
                    proc.log.close_stream(stream)
                break
            if proc.log is not None and stream is not None:
                proc.log.write(stream, data)
            if stream is not None:
                proc.broadcast(stream, data)
        if final and proc.log is not None and stream is not None:
            proc.log.close_stream(stream)

    def _reap(self, block_pid: int = 0) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                if block_pid:
                    time.sleep(0.005)
                    continue
                return
            if self.sessions.reaped(pid, status):
                continue
            cid = self.by_pid.get(pid)
            if cid is not None:
                self._exited(self.procs[cid], status)
                if pid == block_pid:
                    return

    def _exited(self, proc: Proc, status: int) -> None:
        proc.exited = True
        for fd, _ in list(proc.fds.outputs()):
            self._drain(proc, fd, final=True)
        for conn in list(proc.attached):
            self.sel.unregister(conn)
            proc.detach(conn)
        code, reason = exit_reason(status, oom=proc.oom_kills() > proc.oom_baseline)
        path = P.state_path(self.dir, proc.meta.id)
        state = read_state(path)
        if state.status.can_become(Status.EXITED):
            message = "" if proc.log is None or not proc.log.dropped else \
                f"{proc.log.dropped} log lines dropped (log disk full)"
            self._save(proc, state.exited(exit_code=code, reason=reason, message=message,
                                          at=time.time_ns()))

    def _save(self, proc: Proc, state: ContainerState) -> None:
        proc.started = proc.started or state.status is Status.RUNNING
        write_state(P.state_path(self.dir, proc.meta.id), state)
