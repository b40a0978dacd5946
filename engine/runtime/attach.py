"""Attach to a running container's stdio through its monitor (the monitor owns the stdio;
the daemon may come and go)."""
from __future__ import annotations

import contextlib
import socket

from engine.errors import FailedPrecondition, Unavailable
from engine.runtime.context import Ctx
from engine.runtime.status import Status
from engine.shim import attach as frames
from engine.shim.client import MonitorClient

STREAM_NAMES = {frames.STDOUT: "stdout", frames.STDERR: "stderr"}


class AttachSession:
    """read() -> ("stdout"|"stderr", data) or None when the container's output ended.

    read() blocks; callers either loop on it in a thread, or select() on fileno() when
    `buffered` is False."""

    def __init__(self, sock: socket.socket, *, tty: bool, stdin: bool) -> None:
        self.sock = sock
        self.tty = tty
        self.stdin = stdin
        self._reader = frames.FrameReader()
        self._pending: list[tuple[int, bytes]] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def buffered(self) -> bool:
        """Frames already received: read() returns at once (select() on fileno won't say)."""
        return bool(self._pending)

    def read(self) -> tuple[str, bytes] | None:
        while not self._pending:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                return None
            self._pending.extend(self._reader.feed(data))
        kind, payload = self._pending.pop(0)
        return STREAM_NAMES.get(kind, "stdout"), payload

    def write_stdin(self, data: bytes) -> None:
        if not self.stdin:
            raise FailedPrecondition("the container was not created with stdin")
        self._send(frames.frame(frames.STDIN, data))

    def close_stdin(self) -> None:
        self._send(frames.frame(frames.CLOSE_STDIN))

    def resize(self, width: int, height: int) -> None:
        if not self.tty:
            raise FailedPrecondition("resize needs a TTY container")
        self._send(frames.frame(frames.RESIZE, frames.resize_payload(width, height)))

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise Unavailable(f"attach stream closed: {e}") from e

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def attach(ctx: Ctx, cid: str) -> AttachSession:
    rec = ctx.store.load_container(cid)
    state = ctx.store.state(rec)
    if state.status is not Status.RUNNING:
        raise FailedPrecondition(f"container {cid} is {state.status.value}, not running")
    client = MonitorClient(ctx.store.sandbox_dir(rec.sandbox_id))
    sock = client.connect()
    try:
        client.request(sock, "attach", id=cid)
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return AttachSession(sock, tty=rec.config.tty, stdin=rec.config.stdin)
