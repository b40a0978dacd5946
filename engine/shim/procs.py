"""What the monitor keeps per container: its stdio ends, log writer, driver, exit facts."""
from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
import socket
import struct
import termios
from pathlib import Path

from engine.cgroups.detect import manager
from engine.execdriver.base import ExecDriver, Stdio
from engine.execdriver.spec import InitSpec
from engine.runtime.state import REASON_COMPLETED, REASON_ERROR, REASON_OOM
from engine.shim import attach
from engine.shim.crilog import CriLogWriter
from engine.shim.protocol import MonitorContainer


@dataclasses.dataclass
class Fds:
    """The monitor's ends: output fds by stream, and the stdin writer (or -1)."""

    streams: dict[int, str] = dataclasses.field(default_factory=dict)
    stdin: int = -1
    pty: int = -1  # the TTY master (also in streams), for resize

    def outputs(self) -> list[tuple[int, str]]:
        return list(self.streams.items())

    def stream_of(self, fd: int) -> str | None:
        return self.streams.get(fd)

    def closed(self, fd: int) -> None:
        if self.streams.pop(fd, None) is not None:
            os.close(fd)

    def close_stdin(self) -> None:
        if self.stdin >= 0:
            os.close(self.stdin)
            self.stdin = -1

    def close_all(self) -> None:
        for fd in list(self.streams):
            self.closed(fd)
        self.close_stdin()


def open_stdio(meta: MonitorContainer) -> tuple[Stdio, Fds]:
    """(the container's stdio fds, our ends): pipes and /dev/null. A TTY container gets its
    pty from the driver, made inside the container (Created.console); until then /dev/null."""
    if meta.tty:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        return Stdio(null, null, null), Fds()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    if meta.stdin:
        in_r, in_w = os.pipe()
    else:
        in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
    return Stdio(in_r, out_w, err_w), Fds(streams={out_r: "stdout", err_r: "stderr"},
                                          stdin=in_w)


def exit_reason(status: int, *, oom: bool) -> tuple[int, str]:
    """(exit code, reason) from a wait status: signals become 128+n, OOM kills OOMKilled."""
    if os.WIFSIGNALED(status):
        code = 128 + os.WTERMSIG(status)
        if oom and os.WTERMSIG(status) == signal.SIGKILL:
            return code, REASON_OOM
        return code, REASON_ERROR
    code = os.WEXITSTATUS(status)
    if oom and code == 137:
        return code, REASON_OOM
    return code, REASON_COMPLETED if code == 0 else REASON_ERROR


@dataclasses.dataclass
class Proc:
    meta: MonitorContainer
    spec: InitSpec
    driver: ExecDriver
    bundle: Path
    pid: int
    fds: Fds
    log_path: Path
    log: CriLogWriter | None = None
    started: bool = False
    exited: bool = False
    oom_baseline: int = 0
    attached: list[socket.socket] = dataclasses.field(default_factory=list)

    def broadcast(self, stream: str, data: bytes) -> None:
        """Output to every attached client; one that cannot keep up is dropped."""
        for conn in list(self.attached):
            try:
                conn.sendall(attach.frame(attach.STREAMS[stream], data))
            except OSError:
                self.detach(conn)

    def handle_frames(self, frames: list[tuple[int, bytes]]) -> None:
        """Input from an attached client: stdin data, stdin close, terminal resize."""
        for kind, data in frames:
            if kind == attach.STDIN and self.fds.stdin >= 0:
                os.write(self.fds.stdin, data)
            elif kind == attach.CLOSE_STDIN:
                self.fds.close_stdin()
            elif kind == attach.RESIZE and self.fds.pty >= 0:
                width, height = attach.parse_resize(data)
                fcntl.ioctl(self.fds.pty, termios.TIOCSWINSZ,
                            struct.pack("HHHH", height, width, 0, 0))

    def detach(self, conn: socket.socket) -> None:
        if conn in self.attached:
            self.attached.remove(conn)
            conn.close()
            if self.meta.stdin_once:
                self.fds.close_stdin()

    def open_log(self) -> None:
        if self.log is None:
            self.log = CriLogWriter(self.log_path)

    def oom_kills(self) -> int:
        if not self.spec.cgroup_path:
            return 0
        try:
            return manager().oom_kills(self.spec.cgroup_path)
        except OSError:
            return 0
