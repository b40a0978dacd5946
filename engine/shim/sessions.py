"""Monitor connections that outlive one request: attach streams and exec sessions.

exec: {"op": "exec", "id", "process": ExecProcess} sent with the session's three stdio fds
(SCM_RIGHTS). The monitor forks; the child runs the driver's exec_in_child with those fds on
0-2. The reply is {"ok": true, "pid"}; when the session ends a second line {"exit_code"}
follows and the connection closes. The client closing its end first kills the session.
"""
from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
from typing import Any

from engine.errors import EngineError, FailedPrecondition, InvalidArgument
from engine.execdriver.base import ExecProcess, Stdio
from engine.execdriver.codec import from_jsonable
from engine.execdriver.native import become_helper
from engine.shim import attach
from engine.shim.procs import Proc


def _reply(conn: socket.socket, msg: dict[str, Any]) -> bool:
    try:
        conn.sendall(json.dumps(msg).encode() + b"\n")
        return True
    except OSError:
        return False


def _error(e: EngineError) -> dict[str, Any]:
    return {"ok": False, "kind": type(e).__name__, "error": str(e)}


class Sessions:
    def __init__(self, sel: selectors.BaseSelector, procs: dict[str, Proc], *,
                 owner: object = None) -> None:
        """`owner` (the pod) goes into the selector data of every session connection."""
        self.sel = sel
        self.procs = procs
        self.owner = owner
        self.execs: dict[int, socket.socket] = {}
        self.exec_procs: dict[int, Proc] = {}  # helper pid -> the container it runs in

    def take(self, conn: socket.socket, req: dict[str, Any], *, rest: bytes,
             fds: list[int]) -> bool:
        """Handle an attach or exec request (the connection changes mode); False otherwise."""
        op = req.get("op")
        if op not in {"attach", "exec"}:
            return False
        self.sel.unregister(conn)
        try:
            proc = self.procs.get(str(req.get("id")))
            if proc is None or proc.exited or not proc.started:
                raise FailedPrecondition(f"container {req.get('id')} is not running")
            if op == "attach":
                self._attach(conn, proc, rest=rest)
            else:
                self._exec(conn, proc, req=req, fds=fds)
        except EngineError as e:
            _reply(conn, _error(e))
            conn.close()
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        return True

    # -- attach ---------------------------------------------------------------------------
    def _attach(self, conn: socket.socket, proc: Proc, *, rest: bytes) -> None:
        if not _reply(conn, {"ok": True}):
            conn.close()
            return
        conn.settimeout(1.0)  # a client that stops reading is dropped, never waited on
        reader = attach.FrameReader()
        proc.attached.append(conn)
        self.sel.register(conn, selectors.EVENT_READ, ("attach", (self.owner, proc.meta.id,
                                                                reader)))
        if rest:
            proc.handle_frames(reader.feed(rest))

    def attached_input(self, conn: socket.socket, cid: str, *,
                       reader: attach.FrameReader) -> None:
        proc = self.procs.get(cid)
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if proc is None or not data:
            self.sel.unregister(conn)
            if proc is not None:
                proc.detach(conn)
            else:
                conn.close()
            return
        try:
            proc.handle_frames(reader.feed(data))
        except (OSError, ValueError):
            self.sel.unregister(conn)
            proc.detach(conn)

    # -- exec -----------------------------------------------------------------------------
    def _exec(self, conn: socket.socket, proc: Proc, *, req: dict[str, Any],
              fds: list[int]) -> None:
        if len(fds) != 3:
            raise InvalidArgument(f"exec needs 3 stdio fds, got {len(fds)}")
        process = from_jsonable(ExecProcess, req.get("process"))
        if not process.args:
            raise InvalidArgument("exec needs a command")
        pid = os.fork()
        if pid == 0:
            code = 126
            try:
                conn.close()
                become_helper(Stdio(*fds))
                for fd in fds:
                    if fd > 2:
                        os.close(fd)
                code = proc.driver.exec_in_child(proc.spec, bundle=proc.bundle, pid=proc.pid,
                                                 process=process)
            except BaseException as e:
                with contextlib.suppress(OSError):
                    os.write(2, f"exec failed: {e}\n".encode())
            finally:
                os._exit(code)
        self.execs[pid] = conn
        self.exec_procs[pid] = proc
        _reply(conn, {"ok": True, "pid": pid})
        self.sel.register(conn, selectors.EVENT_READ, ("exec", (self.owner, pid)))

    def exec_input(self, conn: socket.socket, pid: int) -> None:
        """The client hung up (or sent something): end the session."""
        with contextlib.suppress(OSError):
            if conn.recv(1):
                return
        self.sel.unregister(conn)
        if pid in self.execs:
            self.exec_input_gone(pid)

    def running(self, pid: int) -> bool:
        return pid in self.execs

    def kill_all(self) -> list[int]:
        """SIGKILL every exec session's helper (the pod is going); their pids."""
        pids = list(self.execs)
        for pid in pids:
            self.exec_input_gone(pid)
        return pids

    def exec_input_gone(self, pid: int) -> None:
        proc = self.exec_procs.get(pid)
        if proc is not None:  # a runtime binary's command is no child of the helper
            with contextlib.suppress(OSError):
                proc.driver.end_exec(bundle=proc.bundle, helper_pid=pid, kill=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def reaped(self, pid: int, status: int) -> bool:
        conn = self.execs.pop(pid, None)
        if conn is None:
            return False
        proc = self.exec_procs.pop(pid, None)
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.driver.end_exec(bundle=proc.bundle, helper_pid=pid, kill=False)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        _reply(conn, {"exit_code": code})
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn)
        conn.close()
        return True
