"""The resident CNI agent: runs our plugins for the thin executables (see shim.py).

A plugin exec spends most of its time starting Python; the agent has started already. It
listens on a unix socket (0600, in a 0700 directory of its uid), serves each request on a
thread of a pool with the code the engine runs in-process (plugins/invoke.py: the
request's own environment, never ``os.environ``; the pod's netns entered per thread;
delegated IPAM in-process when it is ours, else exec'd from CNI_PATH), and a reaper: DEL
returns once the pod is cut off the bridge and its address and rules are released, the
kernel's veth deletion finishes on the reaper's thread.

Started on demand by the first shim that finds none (``autostart`` in the installed
executables: detached, one at a time thanks to the lock beside the socket, which holds the
agent's pid), or by hand (``python -m engine.networkdriver.plugins.agent --socket PATH``).
It stops after ``--idle-timeout`` seconds without a request once its reaper work is done,
when its code changes on disk (it answers "stale" and the shims run the plugins
themselves), or on SIGTERM/SIGINT. Stopping, it first removes its socket (new shims fall
back), then serves what is queued, finishes what runs, and waits for its reaper.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import FailedPrecondition, Unavailable
from engine.networkdriver.plugins import agent_wire, setns, shim, spec
from engine.networkdriver.plugins.reaper import Reaper

log = logging.getLogger(__name__)
SOURCE_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_SOCKET = "/run/kubelet-py/cni-agent/agent.sock"
DEFAULT_IDLE = 120.0
STALE_EVERY = 0.25  # seconds between two looks at the code on disk
MAX_THREADS = 512  # requests served at once (each mostly waits: kernel, IPAM lock, exec)
SWITCH_INTERVAL = 0.0005  # seconds; see main()


def prepare_dir(directory: Path) -> None:
    """The socket's directory: created 0700, refused if another uid owns it or others can
    enter it."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = directory.stat()
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise FailedPrecondition(
            f"{directory}: must be a 0700 directory owned by uid {os.geteuid()}")


def take_lock(path: Path, fd: int | None) -> int:
    """The agent's lock (inherited from the starting shim, or taken here); holds our pid."""
    if fd is None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FailedPrecondition(f"an agent already holds {path}") from None
    os.set_inheritable(fd, False)
    mine = f"{os.getpid()}\n".encode()
    # the starting shim wrote our pid already: rewriting it would leave running_pid() an
    # empty file to read for a moment
    if os.pread(fd, 32, 0) != mine:
        os.ftruncate(fd, 0)
        os.pwrite(fd, mine, 0)
    return fd


def running_pid(socket_path: str) -> int | None:
    """The pid of the agent holding the lock beside ``socket_path``, None when none does."""
    lock = os.path.join(os.path.dirname(socket_path), shim.LOCK_NAME)
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode().strip()
            return int(text) if text.isdigit() else None
        return None
    finally:
        os.close(fd)


class Agent:
    """The listening socket, the request threads and the reaper."""

    def __init__(self, socket_path: Path, *, idle_timeout: float = DEFAULT_IDLE,
                 root: Path = SOURCE_ROOT, poll: float = 0.25, threads: int = MAX_THREADS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``poll``: seconds between checks for idleness and stop requests; ``threads``:
        requests served at once (more wait in the queue)."""
        self.path, self.idle_timeout, self.clock = socket_path, idle_timeout, clock
        self.poll = poll
        self.served = 0  # requests answered with a plugin's result
        self.root = str(root)
        self.stamp = agent_wire.code_stamp(root)
        self.reaper = Reaper()
        # request threads, kept a while for the next requests (a thread start is ~0.2 ms)
        self._requests = Reaper(workers=threads, linger=10.0)
        self._lock = threading.Lock()
        self._active = 0
        self._idle_since = clock()
        self._stopping = threading.Event()
        self._stale = ""
        self._looked = -STALE_EVERY  # when the code on disk was last looked at
        self._listener = self._bind()

    def _bind(self) -> socket.socket:
        """Bound and listening under a temporary name, then renamed into place: the path
        never names a socket that refuses connections (a shim would fall back), and it
        replaces one left by an agent that died (the lock is ours, so no one serves it)."""
        temporary = self.path.with_name(f".{os.getpid()}")  # short: sun_path is 108 bytes
        temporary.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            old = os.umask(0o177)
            try:
                sock.bind(str(temporary))
            finally:
                os.umask(old)
            os.chmod(temporary, 0o600)
            sock.listen(min(socket.SOMAXCONN, 1024))
            self._ino = temporary.stat().st_ino
            os.rename(temporary, self.path)
        except BaseException:
            sock.close()
            temporary.unlink(missing_ok=True)
            raise
        sock.settimeout(self.poll)
        return sock

    def stop(self, reason: str = "") -> None:
        if reason:
            log.info("stopping: %s", reason)
        self._stopping.set()

    def serve(self) -> None:
        """Until stopped or idle; then remove the socket, serve the queue and drain."""
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                if self._idle():
                    self.stop(f"idle for {self.idle_timeout:.0f} s")
                continue
            self._start(conn)
        self._unlink()
        self._listener.setblocking(False)
        while True:  # connections queued before the socket went: served, not reset
            try:
                conn, _ = self._listener.accept()
            except BlockingIOError:
                break
            self._start(conn)
        self._listener.close()
        self._requests.wait()
        self._requests.close()
        self.reaper.wait()
        self.reaper.close()

    def _idle(self) -> bool:
        with self._lock:
            quiet = self._active == 0 and self.clock() - self._idle_since >= self.idle_timeout
        return quiet and self.reaper.pending() == 0

    def _unlink(self) -> None:
        try:
            if self.path.stat().st_ino == self._ino:
                self.path.unlink()
        except FileNotFoundError:
            pass

    def _start(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        with self._lock:
            self._active += 1
        self._requests.submit("request", lambda: self._handle(conn))

    def _handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                try:
                    answer = self.answer(conn)
                except Exception as exc:  # a bug: still a CNI error, not a lost answer
                    log.exception("request failed")
                    err = spec.CNIError(spec.ERR_INTERNAL, f"CNI agent: {type(exc).__name__}",
                                        str(exc))
                    answer = shim.reply(shim.REPLY_RESULT, 1,
                                        _json(err.to_json(spec.SPEC_VERSION)))
                conn.sendall(answer)
        except OSError as exc:
            log.warning("a shim went away before its answer: %s", exc)
        finally:
            with self._lock:
                self._active -= 1
                self._idle_since = self.clock()

    def answer(self, conn: socket.socket) -> bytes:
        """The reply to the request on ``conn``: a result, "fallback" or "stale"."""
        # the whole request is read before any answer: closing a unix socket with unread
        # data resets the connection, and the shim would lose the answer
        try:
            req = agent_wire.read_request(conn)
        except agent_wire.WireError as exc:
            err = spec.CNIError(spec.ERR_DECODE, "malformed request to the CNI agent", str(exc))
            return shim.reply(shim.REPLY_RESULT, 1, _json(err.to_json(spec.SPEC_VERSION)))
        try:
            problem = agent_wire.peer_problem(conn)
            if problem is not None:
                return shim.reply(shim.REPLY_FALLBACK, 0, problem.encode())
            changed = self._stale or self._changed()
            if changed:
                self._stale = changed
                self.stop(f"code changed: {changed}")
                return shim.reply(shim.REPLY_STALE, 0, changed.encode())
            if req.module == agent_wire.STATUS:
                return shim.reply(shim.REPLY_RESULT, 0, self.status(req))
            problem = agent_wire.check_module(req, self.root)
            if problem is not None:
                return shim.reply(shim.REPLY_FALLBACK, 0, problem.encode())
            code, out = self.run(req)
            with self._lock:
                self.served += 1
            return shim.reply(shim.REPLY_RESULT, code, out + b"\n" if out else b"")
        finally:
            if req.netns_fd is not None:
                os.close(req.netns_fd)

    def _changed(self) -> str | None:
        """What changed in our code on disk (looked at every STALE_EVERY seconds at most)."""
        now = self.clock()
        if now - self._looked < STALE_EVERY:
            return None
        self._looked = now
        return agent_wire.stale(self.stamp)

    def status(self, req: agent_wire.AgentRequest) -> bytes:
        """The agent's own figures (JSON): pid, requests served, CPU seconds (user + system,
        all threads), RSS; ``{"settle": true}`` as stdin: once the reaper is idle."""
        import resource

        if json.loads(req.stdin or b"{}").get("settle"):
            self.reaper.wait()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with open("/proc/self/statm") as f:
            rss_pages = int(f.read().split()[1])
        with self._lock:
            served = self.served
        return json.dumps({
            "pid": os.getpid(), "served": served, "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_kib": rss_pages * os.sysconf("SC_PAGE_SIZE") // 1024,
            "max_rss_kib": usage.ru_maxrss}).encode()

    def run(self, req: agent_wire.AgentRequest) -> tuple[int, bytes]:
        """The plugin, in-process on this thread, as the engine runs it."""
        __import__(req.module)
        runner = sys.modules[req.module]
        netns = req.env.get("CNI_NETNS", "")
        setns.pass_netns(netns, req.netns_fd if netns else None)
        try:
            code, out = runner.run(req.env, req.stdin, reaper=self.reaper)
        finally:
            setns.pass_netns("", None)
        return int(code), bytes(out)


def _json(obj: object) -> bytes:
    from engine.networkdriver.plugins import jsonio

    return jsonio.dumps(obj).encode() + b"\n"


def stop_running(socket_path: str, *, timeout: float = 60.0) -> int | None:
    """SIGTERM the agent beside ``socket_path`` and wait for its lock; its pid, or None."""
    pid = running_pid(socket_path)
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return pid
    deadline = time.monotonic() + timeout
    while running_pid(socket_path) == pid:
        if time.monotonic() > deadline:
            raise Unavailable(f"the CNI agent {pid} did not stop within {timeout:.0f} s")
        time.sleep(0.05)
    return pid


def query_status(socket_path: str, *, settle: bool = False) -> dict[str, Any]:
    """Ask the agent at ``socket_path`` for :meth:`Agent.status`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as conn:
        conn.connect(socket_path)
        conn.sendall(shim.frame(agent_wire.STATUS.encode(), str(SOURCE_ROOT).encode(), b"",
                                b'{"settle": true}' if settle else b"{}"))
        data = b"".join(iter(lambda: conn.recv(1 << 16), b""))
    if data[:2] != shim.REPLY_RESULT + b"\0":
        raise Unavailable(f"the CNI agent at {socket_path} answered {data[:200]!r}")
    status: dict[str, Any] = json.loads(data[10:])
    return status


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="kubelet-py CNI agent")
    parser.add_argument("--socket", default=os.environ.get(shim.ENV_SOCKET) or DEFAULT_SOCKET)
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE,
                        help="seconds without a request before the agent exits")
    parser.add_argument("--lock-fd", type=int, default=None,
                        help="the lock, inherited from the shim that started the agent")
    parser.add_argument("--log-file", default="",
                        help="default: agent.log beside the socket when started by a shim")
    parser.add_argument("--threads", type=int, default=MAX_THREADS,
                        help="requests served at once (more wait in the queue)")
    parser.add_argument("--status", action="store_true",
                        help="print the running agent's figures (JSON) and exit")
    parser.add_argument("--stop", action="store_true",
                        help="stop the running agent (SIGTERM) and wait until it has exited")
    args = parser.parse_args(argv)
    if args.stop:
        if args.socket:
            stop_running(args.socket)
        return
    if args.status:
        try:
            print(json.dumps(query_status(args.socket)))
        except (OSError, Unavailable) as exc:
            raise SystemExit(f"kpy CNI agent: none at {args.socket}: {exc}") from None
        return
    path = Path(args.socket)
    try:
        prepare_dir(path.parent)
        lock = take_lock(path.parent / shim.LOCK_NAME, args.lock_fd)
    except FailedPrecondition as exc:
        raise SystemExit(f"kpy CNI agent: {exc}") from None
    log_file = args.log_file or (str(path.parent / "agent.log") if args.lock_fd else "")
    logging.basicConfig(level=logging.INFO if not log_file else logging.WARNING,
                        filename=log_file or None,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # hand the GIL over every 0.5 ms rather than 5: requests are short bursts of Python
    # between syscalls, and at 200 in flight a thread back from the kernel would otherwise
    # wait up to 5 ms for each turn (200 concurrent ADDs+DELs: ~12 s -> ~7 s, same CPU)
    sys.setswitchinterval(SWITCH_INTERVAL)
    agent = Agent(path, idle_timeout=args.idle_timeout, threads=args.threads)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop("signal"))
    log.info("serving on %s (pid %d)", path, os.getpid())
    try:
        agent.serve()
    finally:
        os.close(lock)
    log.info("stopped after %d requests", agent.served)


if __name__ == "__main__":
    main()
