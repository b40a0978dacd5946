"""The runtime's side of the monitor zygote (engine.shim.monitor_zygote): start it, ask it
for a pod's monitor, restart it once when it is found dead.

One zygote per run root and process. engined binds `<run_root>/zygote.sock` itself (a stale
file from an earlier engined is replaced), hands the listening fd to the zygote and keeps
the write end of a pipe whose EOF tells the zygote to exit; so the zygote dies with engined,
while the monitors it forked do not. The zygote is started on the first spawn; it ends when
the last Runtime context using it is garbage-collected (tests make many) or engined exits.

Pods per monitor (engine.shim.monitor says why): with K > 1 the spawner remembers the
monitor processes it made and the sandboxes each took; a new sandbox is offered to the
newest one that has hosted fewer than K pods ({"op": "adopt"} on one of its pods' sockets),
and only when none takes it is a new process forked. A fresh spawner (engined restarted)
knows no process, so pods never join a monitor that runs code from before the restart.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import threading
import weakref
from pathlib import Path
from typing import Any

from engine import errors
from engine.execdriver.helper import helper_env, python_argv
from engine.shim import protocol as P
from engine.shim.client import MonitorClient, check_reply

log = logging.getLogger(__name__)
SOCKET = "zygote.sock"
LOG = "zygote.log"


class _ZygoteGone(Exception):
    """The zygote was not there to take the request (refused, or it died holding it)."""


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:].strip()
    except OSError:
        return ""


class MonitorSpawner:
    def __init__(self, run_root: Path, *, timeout: float = 30.0,
                 command: tuple[str, ...] = ()) -> None:
        """`command`: the zygote's argv before its two fd arguments (tests replace it)."""
        self.run_root = run_root
        self.timeout = timeout
        self.command = command or tuple(python_argv("engine.shim.monitor_zygote"))
        self._lock = threading.RLock()  # close() may run from a GC finalizer
        self._proc: subprocess.Popen[bytes] | None = None
        self._alive_w = -1
        # monitor processes of ours that may have room: pid -> the sandbox dirs it took
        self._hosts: dict[int, list[Path]] = {}

    @property
    def pid(self) -> int:
        """The running zygote's pid, or 0."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else 0

    # -- the zygote process ---------------------------------------------------------------
    def _start(self) -> subprocess.Popen[bytes]:
        self.run_root.mkdir(parents=True, exist_ok=True)
        dirfd = os.open(self.run_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        r, w = os.pipe()
        try:
            path = f"/proc/self/fd/{dirfd}/{SOCKET}"  # run roots exceed sun_path's 108 bytes
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a stale socket of an earlier engined (or zygote)
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(128)
            with open(self.run_root / LOG, "ab") as stderr:
                proc = subprocess.Popen(
                    [*self.command, str(listener.fileno()), str(r)],
                    pass_fds=(listener.fileno(), r), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=stderr, env=helper_env(), cwd="/",
                    start_new_session=True)
        except BaseException:
            os.close(w)
            raise
        finally:
            listener.close()  # the zygote's from now on: a dead zygote refuses connections
            os.close(r)
            os.close(dirfd)
        self._proc, self._alive_w = proc, w
        log.info("monitor zygote started (pid %d)", proc.pid)
        return proc

    def _current(self, *, failed: subprocess.Popen[bytes] | None = None
                 ) -> subprocess.Popen[bytes]:
        """The running zygote; started when there is none or when `failed` (the one a
        request just found dead) is still the current one."""
        with self._lock:
            proc = self._proc
            if proc is not None and (proc is failed or proc.poll() is not None):
                code = proc.poll()
                log.warning("monitor zygote (pid %d) is gone (exit status %s); restarting",
                            proc.pid, code)
                self._stop_locked()
                proc = None
            return proc if proc is not None else self._start()

    def ensure_started(self) -> int:
        """Start the zygote now if it is not running (a daemon may do so at start-up, so
        that the first RunPodSandbox does not wait for its imports); its pid."""
        return self._current().pid

    def close(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._alive_w >= 0:
            os.close(self._alive_w)  # EOF: the zygote exits (its monitors live on)
            self._alive_w = -1
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- requests -------------------------------------------------------------------------
    def spawn(self, sandbox_dir: Path, *, pods_per_monitor: int = 1) -> int:
        """A monitor for `sandbox_dir`, listening once this returns; its process's pid.
        With `pods_per_monitor` > 1 a monitor process of ours with room adopts the sandbox;
        otherwise the zygote makes a new one: its spare, or a fork (engine.shim.monitor_zygote)."""
        if pods_per_monitor < 1:
            raise errors.InvalidArgument(f"pods per monitor must be at least 1, got "
                                         f"{pods_per_monitor}")
        if pods_per_monitor > 1:
            pid = self._adopt(sandbox_dir, pods_per_monitor)
            if pid:
                return pid
        pid = self._fork(sandbox_dir, pods_per_monitor)
        if pods_per_monitor > 1:
            with self._lock:
                self._hosts[pid] = [sandbox_dir]
        return pid

    def _adopt(self, sandbox_dir: Path, k: int) -> int:
        """Ask our monitor processes with room (the newest first) to adopt the sandbox; its
        pid, or 0 when none would. A process refuses once it has hosted `k` pods; one that
        is gone refuses connections on every socket of its pods."""
        with self._lock:
            candidates = [(pid, list(dirs)) for pid, dirs in reversed(self._hosts.items())]
        for pid, dirs in candidates:
            for via in reversed(dirs):
                try:
                    if int((via / P.PIDFILE).read_text()) != pid:
                        continue  # that pod is gone (or was never served by it)
                    reply = MonitorClient(via, timeout=self.timeout).call(
                        "adopt", dir=str(sandbox_dir), pods_per_monitor=k)
                except (OSError, ValueError, errors.Unavailable, errors.NotFound):
                    continue  # try the process through another of its pods
                except errors.DeadlineExceeded:
                    raise  # it may still adopt: another monitor must not take the dir
                except errors.EngineError as e:
                    log.debug("monitor %d did not adopt %s: %s", pid, sandbox_dir.name, e)
                    break
                with self._lock:
                    taken = self._hosts.get(pid)
                    if taken is not None:
                        taken.append(sandbox_dir)
                        if len(taken) >= k:
                            del self._hosts[pid]
                return int(reply["pid"])
            with self._lock:
                self._hosts.pop(pid, None)
        return 0

    def _fork(self, sandbox_dir: Path, k: int) -> int:
        req = {"op": "spawn", "dir": str(sandbox_dir), "pods_per_monitor": k}
        proc = self._current()
        try:
            reply = self._request(proc, req, what=f"monitor for {sandbox_dir.name}")
        except _ZygoteGone as first:
            proc = self._current(failed=proc)
            try:
                reply = self._request(proc, req, what=f"monitor for {sandbox_dir.name}")
            except _ZygoteGone as second:
                raise errors.Unavailable(
                    f"the monitor zygote died ({first}) and its restart failed too "
                    f"({second}): {_tail(self.run_root / LOG) or 'no log'}") from second
        except errors.Unavailable as e:
            tail = _tail(sandbox_dir / "monitor.log")
            raise errors.Unavailable(f"{e}{': ' + tail if tail else ''}") from e
        return int(reply["pid"])

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Any other zygote request (ping, modules), to the running zygote."""
        proc = self._current()
        try:
            return self._request(proc, {"op": op, **args}, what=op)
        except _ZygoteGone as e:
            raise errors.Unavailable(f"the monitor zygote is not running: {e}") from e

    def _request(self, proc: subprocess.Popen[bytes], req: dict[str, Any], *,
                 what: str) -> dict[str, Any]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        dirfd = os.open(self.run_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                sock.connect(f"/proc/self/fd/{dirfd}/{SOCKET}")
            except (FileNotFoundError, ConnectionRefusedError) as e:
                raise _ZygoteGone(f"connect: {e.strerror}") from e
            buf = b""
            try:
                sock.sendall(json.dumps(req).encode() + b"\n")
                while not buf.endswith(b"\n"):
                    data = sock.recv(4096)
                    if not data:
                        break
                    buf += data
            except TimeoutError as e:
                raise errors.DeadlineExceeded(f"the {what} did not start in "
                                              f"{self.timeout:g}s") from e
            except OSError as e:
                buf = b""
                if proc.poll() is not None:
                    raise _ZygoteGone(f"{e.strerror or e}") from e
            if not buf.endswith(b"\n"):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.2)  # a zygote dying as it hung up: see it as dead
                if proc.poll() is not None:
                    raise _ZygoteGone(f"exit status {proc.returncode}")
                raise errors.Unavailable(f"the {what} exited before it was ready")
            return check_reply(json.loads(buf), who="the monitor zygote")
        finally:
            sock.close()
            os.close(dirfd)


# -- one spawner per run root, alive while a runtime context uses it ---------------------------
_registry_lock = threading.RLock()  # _release runs from GC finalizers, at any allocation
_spawners: dict[Path, tuple[MonitorSpawner, set[int]]] = {}


def spawner_for(run_root: Path, *, owner: object) -> MonitorSpawner:
    """The spawner of `run_root`, kept while `owner` (a Runtime's context) lives: the zygote
    is stopped when the last owner is collected."""
    key = run_root.resolve()
    with _registry_lock:
        spawner, owners = _spawners.setdefault(key, (MonitorSpawner(key), set()))
        if id(owner) not in owners:
            owners.add(id(owner))
            weakref.finalize(owner, _release, key, id(owner))
        return spawner


def _release(key: Path, owner: int) -> None:
    with _registry_lock:
        entry = _spawners.get(key)
        if entry is None:
            return
        entry[1].discard(owner)
        if entry[1]:
            return
        del _spawners[key]
    entry[0].close()


def stop_zygote(run_root: Path) -> None:
    """Stop the zygote of `run_root` now, whoever uses it (a daemon's orderly shutdown, test
    teardown); a later spawn starts a fresh one. Its monitors are not affected."""
    with _registry_lock:
        entry = _spawners.pop(run_root.resolve(), None)
    if entry is not None:
        entry[0].close()
