"""The gRPC server: one event-loop thread (selectors) serving every connection of a unix
socket, a bounded worker pool for the calls that may block.

    server = Server(handlers, inline={"/runtime.v1.RuntimeService/ListContainers", ...})
    server.bind(Path("/run/x.sock"))
    server.start()
    ...
    server.stop(grace_s=5)

Workers hand results to the loop through `post`, which wakes it with an eventfd. A call
beyond `max_concurrent_rpcs` (running or queued for a worker) is answered
RESOURCE_EXHAUSTED at once; a connection beyond its stream limit gets REFUSED_STREAM.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import heapq
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc

from cri.h2.calls import Call
from cri.h2.guard import DEFAULT_LIMITS, Limits
from cri.h2.session import Admission, Lookup, Session
from cri.h2.workers import Workers

log = logging.getLogger(__name__)

READ_BYTES = 256 << 10
OUT_LIMIT = 4 << 20  # unsent bytes of a connection beyond which we stop reading it
_TICK_S = 1.0


class _Client:
    __slots__ = ("events", "session", "sock")

    def __init__(self, sock: socket.socket, session: Session) -> None:
        self.sock = sock
        self.session = session
        self.events = selectors.EVENT_READ


class Server:
    def __init__(self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]], *,
                 inline: Iterable[str] = (), max_workers: int = 32,
                 max_concurrent_rpcs: int = 1024, max_message_bytes: int = 16 << 20,
                 max_connections: int = 1024, limits: Limits = DEFAULT_LIMITS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.max_message = max_message_bytes
        self._limits = limits  # what one connection may do without a call (cri.h2.guard)
        # connections beyond this are closed as they come (each costs an fd and a session);
        # when the process runs out of fds, the listener rests until a connection closes
        # instead of waking the loop for an accept() that cannot succeed
        self._max_connections = max_connections
        self._refused = 0
        self._accept_paused = False
        self._lookup = Lookup(handlers)
        self._inline = frozenset(inline)
        self._admission = Admission(max_concurrent_rpcs)
        self._max_workers = max_workers
        self._monotonic = monotonic
        self._listener: socket.socket | None = None
        self._peer = "unix:"
        self._sel = selectors.DefaultSelector()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._wake_pending = False
        self._posted: collections.deque[Callable[[], None]] = collections.deque()
        self._deadlines: list[tuple[float, int, Call]] = []
        self._seq = 0
        self._clients: dict[int, _Client] = {}
        self._dirty: dict[int, _Client] = {}
        self._pool: Workers | None = None
        self._thread: threading.Thread | None = None
        self._stopping: float | None = None  # monotonic time the grace ends
        self._stopped = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------

    def bind(self, path: Path) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(str(path))
            sock.listen(512)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._listener = sock
        self._peer = f"unix:{path}"

    def start(self) -> None:
        if self._listener is None:
            raise RuntimeError("bind() first")
        self._pool = Workers(self._max_workers, name="cri-rpc")
        self._pool.start()
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._sel.register(self._wake_fd, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._loop, name="cri-h2-loop", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = 5.0) -> None:
        """GOAWAY to every client, let running calls finish for `grace_s`, then cancel
        what is left and close; returns once the loop has ended."""
        if self._thread is None:
            return
        self.post(lambda: self._begin_stop(grace_s))
        self._stopped.wait()
        self._thread.join()
        self._thread = None
        if self._pool is not None:
            self._pool.shutdown()
        self._wake_pending = True  # a worker finishing late posts, but never writes the fd
        os.close(self._wake_fd)
        self._sel.close()

    def wait(self, timeout_s: float | None = None) -> bool:
        return self._stopped.wait(timeout_s)

    # -- what calls use (calls.Runtime) ---------------------------------------------------

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the loop thread (from any thread)."""
        self._posted.append(fn)
        if not self._wake_pending:
            self._wake_pending = True
            with contextlib.suppress(OSError):  # racing stop(): nothing will run it anyway
                os.eventfd_write(self._wake_fd, 1)

    def submit(self, fn: Callable[[], None]) -> None:
        assert self._pool is not None
        self._pool.submit(fn)

    def release(self) -> None:
        self._admission.release()

    def watch(self, call: Call) -> None:
        deadline = call.ctx.deadline
        if deadline is not None:
            if len(self._deadlines) >= 4096:  # mostly calls long done: keep the live ones
                self._deadlines = [d for d in self._deadlines if not d[2].done]
                heapq.heapify(self._deadlines)
            self._seq += 1
            heapq.heappush(self._deadlines, (deadline, self._seq, call))

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                if self._stopping is not None and (
                        not self._busy() or self._monotonic() >= self._stopping):
                    break
                for key, _ in self._sel.select(self._timeout()):
                    fileobj = key.fileobj
                    if fileobj is self._listener:
                        self._accept()
                    elif fileobj == self._wake_fd:
                        self._wake()
                    else:
                        self._io(key.data, key.events)
                self._run_posted()
                self._expire()
                self._flush()
        except Exception:
            log.exception("the gRPC event loop failed")
        finally:
            self._close_all()
            self._stopped.set()

    def _timeout(self) -> float:
        if self._posted:
            return 0.0
        timeout = _TICK_S
        if self._deadlines:
            timeout = min(timeout, max(0.0, self._deadlines[0][0] - self._monotonic()))
        if self._stopping is not None:
            timeout = min(timeout, max(0.0, self._stopping - self._monotonic()), 0.05)
        return timeout

    def _busy(self) -> bool:
        return self._admission.held > 0 or any(
            c.session.conn.streams or c.session.conn.out for c in self._clients.values())

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._clients:
                    self._sel.unregister(self._listener)  # back when a connection closes
                    self._accept_paused = True
                return
            if len(self._clients) >= self._max_connections:
                sock.close()
                self._refused += 1
                if self._refused % 1000 == 1:
                    log.warning("refused a connection: %d open (the limit); %d refused so far",
                                len(self._clients), self._refused)
                continue
            sock.setblocking(False)
            session = Session(runtime=self, lookup=self._lookup, inline=self._inline,
                              admission=self._admission, peer=self._peer,
                              limits=self._limits, monotonic=self._monotonic)
            client = _Client(sock, session)
            self._clients[sock.fileno()] = client
            self._sel.register(sock, selectors.EVENT_READ, client)
            self._dirty[sock.fileno()] = client  # the server preface

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake_fd)
        self._wake_pending = False

    def _run_posted(self) -> None:
        posted = self._posted
        while posted:
            fn = posted.popleft()
            try:
                fn()
            except Exception:
                log.exception("a posted gRPC action failed")
        for client in self._clients.values():
            if client.session.conn.out:
                self._dirty[client.sock.fileno()] = client

    def _io(self, client: _Client, events: int) -> None:
        conn = client.session.conn
        if events & selectors.EVENT_READ and not conn.closed:
            try:
                data = client.sock.recv(READ_BYTES)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                conn.lost()
                self._close(client)
                return
            if data:
                conn.receive(data)
        self._dirty.pop(client.sock.fileno(), None)
        self._write(client)  # the inline answers leave now, not after the other clients

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for client in dirty.values():
            self._write(client)

    def _write(self, client: _Client) -> None:
        conn = client.session.conn
        out = conn.out
        if out:
            try:
                sent = client.sock.send(out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                conn.lost()
                self._close(client)
                return
            del out[:sent]
        if conn.closed and not out:
            self._close(client)
            return
        # a client that does not read its answers is not read either (no unbounded `out`)
        want = (selectors.EVENT_READ if len(out) < OUT_LIMIT and not conn.closed else 0) | (
            selectors.EVENT_WRITE if out else 0)
        if want != client.events:
            client.events = want
            self._sel.modify(client.sock, want, client)

    def _close(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if self._clients.pop(fd, None) is None:
            return
        self._dirty.pop(fd, None)
        self._sel.unregister(client.sock)
        client.sock.close()
        if self._accept_paused and self._listener is not None:
            self._accept_paused = False
            self._sel.register(self._listener, selectors.EVENT_READ, None)

    def _expire(self) -> None:
        now = self._monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, call = heapq.heappop(self._deadlines)
            if not call.done:
                call.cancel(code=grpc.StatusCode.DEADLINE_EXCEEDED,
                            details="Deadline Exceeded")

    def _begin_stop(self, grace_s: float) -> None:
        self._stopping = self._monotonic() + grace_s
        if self._listener is not None:
            if not self._accept_paused:
                self._sel.unregister(self._listener)
            self._accept_paused = False
            self._listener.close()
            self._listener = None
        for client in self._clients.values():
            client.session.conn.goaway()

    def _close_all(self) -> None:
        for client in list(self._clients.values()):
            client.session.conn.lost()  # cancels what still runs
            self._write(client)
            self._close(client)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._run_posted()
