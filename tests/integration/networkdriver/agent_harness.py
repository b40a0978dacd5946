"""A CNI agent for tests: in this process on a thread (cheap), or as a process of its own
(to kill it); wrappers installed to use it; nothing left running afterwards."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine.networkdriver.plugins import agent, install, shim


def socket_in(root: Path) -> Path:
    directory = root / "agent"
    agent.prepare_dir(directory)
    return directory / "agent.sock"


def install_with_agent(bin_dir: Path, sock: Path, *, autostart: bool = False,
                       python: str = sys.executable) -> list[Path]:
    return install.install(bin_dir, python=python, agent_socket=str(sock), autostart=autostart)


class ThreadAgent:
    """``Agent`` serving on a thread of this process until :meth:`close`."""

    def __init__(self, sock: Path, **kw: object) -> None:
        self.agent = agent.Agent(sock, poll=0.05, **kw)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.agent.serve, name="test-cni-agent")
        self.thread.start()

    def close(self) -> None:
        self.agent.stop("test done")
        self.thread.join(30)
        assert not self.thread.is_alive(), "the agent did not stop"


def start_process(sock: Path, *, idle: float = 60) -> subprocess.Popen[bytes]:
    """The agent as its own process, serving once this returns."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.networkdriver.plugins.agent", "--socket", str(sock),
         "--idle-timeout", str(idle)], cwd=str(install.SOURCE_ROOT),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        assert time.monotonic() < deadline, "the agent did not start"
        time.sleep(0.02)
    return proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
    proc.wait(10)
    if proc.stderr:
        proc.stderr.close()


def kill_autostarted(sock: Path) -> None:
    """The agent a shim started beside ``sock`` (its pid is in the lock), if one runs."""
    pid = agent.running_pid(str(sock))
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while agent.running_pid(str(sock)) == pid and time.monotonic() < deadline:
            time.sleep(0.02)


def lock_path(sock: Path) -> Path:
    return sock.parent / shim.LOCK_NAME
