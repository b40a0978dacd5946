"""MonitorClient against a monitor that dies mid-call: an engine error, never a raw OSError
(the CRI layer maps engine errors to gRPC codes; anything else would be UNKNOWN)."""
from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import errors
from engine.runtime.exec import ExecSession
from engine.shim import protocol as P
from engine.shim.client import MonitorClient


@pytest.fixture
def sandbox_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kpy-shim-") as d:
        yield Path(d)


def _resetting_monitor(d: Path) -> threading.Thread:
    """Accepts one connection and closes it with the request unread: on a unix socket the
    client's next recv then fails with ECONNRESET, as when a monitor is killed mid-call."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(d / P.SOCKET))
    server.listen(1)

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            conn.recv(1, socket.MSG_PEEK)  # the request arrived; leave it unread
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_monitor_dying_mid_call_is_unavailable(sandbox_dir: Path) -> None:
    thread = _resetting_monitor(sandbox_dir)
    with pytest.raises(errors.Unavailable, match="monitor"):
        MonitorClient(sandbox_dir, timeout=10).call("shutdown")
    thread.join(5)


def test_a_monitor_dying_mid_request_is_unavailable(sandbox_dir: Path) -> None:
    thread = _resetting_monitor(sandbox_dir)
    client = MonitorClient(sandbox_dir, timeout=10)
    sock = client.connect()
    try:
        with pytest.raises(errors.Unavailable, match="monitor"):
            client.request(sock, "attach", id="c")
    finally:
        sock.close()
    thread.join(5)


def test_no_monitor_socket_is_unavailable(sandbox_dir: Path) -> None:
    with pytest.raises(errors.Unavailable, match="not running"):
        MonitorClient(sandbox_dir).call("status")


def test_an_exec_session_whose_monitor_resets_is_unavailable() -> None:
    ours, theirs = socket.socketpair()
    ours.sendall(b"y")  # unread when it closes: our recv gets ECONNRESET
    theirs.close()
    session = ExecSession(ours, pid=1, stdin=-1, stdout=-1, stderr=-1, tty=False)
    with pytest.raises(errors.Unavailable, match=r"went away during the exec session: .*reset"):
        session.wait(5)
    ours.close()
