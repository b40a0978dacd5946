"""One pod inside a monitor process (engine.shim.monitor): its sandbox dir, the listener on
<dir>/monitor.sock, its containers and exec/attach sessions, and the operations on them.

Everything here concerns this pod only; what a monitor process shares between the pods it
hosts (the selector loop, reaping, the pid -> container map) is `Host`, reached through
`self.host`. `op_shutdown` ends this pod alone: its containers are killed and reaped, its
socket and pidfile removed (so `monitor_alive(<dir>)` is False at once, whether or not the
process lives on for other pods).
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
import time
from pathlib import Path
from typing import Any, Protocol

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


class Host(Protocol):
    """What a pod needs from the process that hosts it (engine.shim.monitor.MonitorProcess)."""

    sel: selectors.BaseSelector

    def track(self, pid: int, pod: Pod, cid: str) -> None: ...

    def untrack(self, pid: int) -> None: ...

    def reap(self, block_pid: int = 0) -> None: ...

    def host_op(self, op: str) -> Any: ...

    def pod_gone(self, pod: Pod) -> None: ...


class Pod:
    def __init__(self, sandbox_dir: Path, host: Host) -> None:
        self.dir = sandbox_dir
        self.host = host
        self.procs: dict[str, Proc] = {}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sessions = Sessions(host.sel, self.procs, owner=self)
        self.gone = False
        self.clients: set[socket.socket] = set()

    # -- connections ----------------------------------------------------------------------
    def listen(self) -> None:
        """Listen on <dir>/monitor.sock (a stale one replaced) and claim <dir>/monitor.pid."""
        dirfd = os.open(self.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            path = f"/proc/self/fd/{dirfd}/{P.SOCKET}"  # run dirs exceed sun_path's 108 bytes
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self.listener.bind(path)
        finally:
            os.close(dirfd)
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.host.sel.register(self.listener, selectors.EVENT_READ, ("accept", self))
        tmp = self.dir / (P.PIDFILE + ".tmp")
        tmp.write_text(str(os.getpid()))
        tmp.rename(self.dir / P.PIDFILE)

    def accept(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            conn, _ = self.listener.accept()
            conn.setblocking(True)
            self.clients.add(conn)
            self.host.sel.register(conn, selectors.EVENT_READ, ("client", (self, bytearray())))

    def _drop_client(self, conn: socket.socket) -> None:
        self.clients.discard(conn)
        with contextlib.suppress(KeyError, ValueError):
            self.host.sel.unregister(conn)
        conn.close()

    def client(self, conn: socket.socket, buf: bytearray) -> None:
        try:
            chunk, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        except OSError:
            chunk, fds = b"", []
        for fd in fds:  # recvmsg without MSG_CMSG_CLOEXEC: never let another pod inherit it
            os.set_inheritable(fd, False)
        if not chunk:
            self._drop_client(conn)
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
                self.clients.discard(conn)  # the session owns it now
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
            if self.gone:
                raise FailedPrecondition(f"the pod of {self.dir.name} is shut down")
            handler = getattr(self, f"op_{op}", None) or self.host.host_op(str(op))
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
                               net_made=bool(req.get("net_made")),
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
            for fd in {stdio.stdin, stdio.stdout, stdio.stderr}:
                os.close(fd)
        pid = created.pid
        if meta.tty:
            if created.console < 0:
                os.kill(pid, signal.SIGKILL)
                raise FailedPrecondition(f"driver {meta.driver} made no TTY for {meta.id}")
            os.set_inheritable(created.console, False)  # it came over SCM_RIGHTS
            ours = Fds(streams={created.console: "stdout"}, pty=created.console,
                       stdin=os.dup(created.console) if meta.stdin else -1)
        proc = Proc(meta=meta, spec=spec, driver=driver, bundle=bundle, pid=pid, fds=ours,
                    log_path=Path(meta.log_path))
        proc.oom_baseline = proc.oom_kills()
        self.procs[meta.id] = proc
        self.host.track(pid, self, meta.id)
        for fd, stream in ours.outputs():
            os.set_blocking(fd, False)
            self.host.sel.register(fd, selectors.EVENT_READ, ("output", (self, meta.id, stream)))
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
        """End this pod: kill and reap its containers and exec sessions, stop listening,
        drop its socket and pidfile. The process lives on while it hosts other pods."""
        for pid in self.sessions.kill_all():
            self._wait_pid(pid)
        for proc in list(self.procs.values()):
            if not proc.exited:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                self._wait_exit(proc)
            self._forget(proc)
        self.close()
        return {}

    def close(self) -> None:
        """Stop serving this pod (its remaining connections closed after this request's
        reply), remove monitor.sock and our monitor.pid, and leave the host."""
        self.gone = True
        with contextlib.suppress(KeyError, ValueError):
            self.host.sel.unregister(self.listener)
        self.listener.close()
        (self.dir / P.SOCKET).unlink(missing_ok=True)
        with contextlib.suppress(OSError, ValueError):
            if int((self.dir / P.PIDFILE).read_text()) == os.getpid():
                (self.dir / P.PIDFILE).unlink()
        self.host.pod_gone(self)

    def close_clients(self) -> None:
        for conn in list(self.clients):
            self._drop_client(conn)

    # -- processes ------------------------------------------------------------------------
    def _wait_exit(self, proc: Proc) -> None:
        deadline = time.monotonic() + 10
        while not proc.exited and time.monotonic() < deadline:
            self.host.reap(block_pid=proc.pid)

    def _wait_pid(self, pid: int) -> None:
        deadline = time.monotonic() + 10
        while self.sessions.running(pid) and time.monotonic() < deadline:
            self.host.reap(block_pid=pid)

    def _forget(self, proc: Proc) -> None:
        for fd, _ in proc.fds.outputs():
            self._drain(proc, fd, final=True)
        proc.driver.delete(proc.spec, bundle=proc.bundle)
        for fd, _ in proc.fds.outputs():  # still open (a grandchild holds the other end):
            with contextlib.suppress(KeyError, ValueError):  # never close a registered fd,
                self.host.sel.unregister(fd)  # its number is reused by the next pod's fds
        for conn in list(proc.attached):
            with contextlib.suppress(KeyError, ValueError):
                self.host.sel.unregister(conn)
            proc.detach(conn)
        proc.fds.close_all()
        if proc.log is not None:
            proc.log.close()
        self.procs.pop(proc.meta.id, None)
        self.host.untrack(proc.pid)

    def output(self, fd: int, cid: str) -> None:
        proc = self.procs.get(cid)
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
                self.host.sel.unregister(fd)
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

    def exited(self, cid: str, status: int) -> None:
        proc = self.procs[cid]
        proc.exited = True
        for fd, _ in list(proc.fds.outputs()):
            self._drain(proc, fd, final=True)
        for conn in list(proc.attached):
            self.host.sel.unregister(conn)
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
