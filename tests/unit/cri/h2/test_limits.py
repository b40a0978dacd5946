"""Our server's connection limits: connections beyond the cap are closed as they come, and
running out of fds rests the listener instead of spinning the loop on accept()."""
from __future__ import annotations

import errno
import selectors
import shutil
import socket
import tempfile
import time
from pathlib import Path

import grpc

from cri.h2 import frames
from cri.h2.server import Server, _Client
from cri.h2.session import Session
from tests.unit.cri.h2.echo_service import SERVICE, Seen, handler


def _settings_or_eof(sock: socket.socket) -> bytes:
    """What the server sends first: its SETTINGS frame header, or b"" when it hung up."""
    try:  # the server may hang up before the preface is written
        sock.sendall(frames.PREFACE)
        return sock.recv(9)
    except (BrokenPipeError, ConnectionResetError):
        return b""


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(path))
    return sock


def test_connections_beyond_the_cap_are_closed_and_the_server_goes_on() -> None:
    path = Path(tempfile.mkdtemp(prefix="h2l-", dir="/tmp")) / "s.sock"
    server = Server([handler(Seen())], max_workers=2, max_connections=2)
    server.bind(path)
    server.start()
    try:
        first, second = _connect(path), _connect(path)
        for s in (first, second):
            head = _settings_or_eof(s)
            assert len(head) == 9 and head[3] == frames.FrameType.SETTINGS
        third = _connect(path)
        assert _settings_or_eof(third) == b""  # closed at once
        third.close()
        first.close()
        deadline = time.monotonic() + 5  # the server notices the close, a slot frees up
        while True:
            fourth = _connect(path)
            head = _settings_or_eof(fourth)
            if head or time.monotonic() > deadline:
                break
            fourth.close()
            time.sleep(0.05)
        assert len(head) == 9 and head[3] == frames.FrameType.SETTINGS
        fourth.close()
        second.close()
        deadline = time.monotonic() + 5  # the server sees both closes before a new client
        while server._clients and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not server._clients
        with grpc.insecure_channel(f"unix://{path}") as ch:
            assert ch.unary_unary(f"/{SERVICE}/Unary")(b"echo:still", timeout=10) == b"still"
    finally:
        server.stop(0.5)
        shutil.rmtree(path.parent, ignore_errors=True)


class _ExhaustedListener:
    """A listener whose accept() fails as it does when the process has no fd left."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real

    def fileno(self) -> int:
        return self.real.fileno()

    def accept(self) -> tuple[socket.socket, object]:
        raise OSError(errno.EMFILE, "Too many open files")

    def close(self) -> None:
        self.real.close()


def test_out_of_fds_rests_the_listener_until_a_connection_closes() -> None:
    path = Path(tempfile.mkdtemp(prefix="h2l-", dir="/tmp")) / "s.sock"
    server = Server([handler(Seen())], max_workers=1)
    server.bind(path)  # not started: the test drives the loop's steps itself
    real = server._listener
    assert real is not None
    a, b = socket.socketpair()
    try:
        server._sel.register(real, selectors.EVENT_READ, None)
        client = _Client(a, Session(runtime=server, lookup=server._lookup, inline=frozenset(),
                                    admission=server._admission, peer="unix:",
                                    monotonic=time.monotonic))
        server._clients[a.fileno()] = client
        server._sel.register(a, selectors.EVENT_READ, client)
        server._listener = _ExhaustedListener(real)  # type: ignore[assignment]
        server._accept()
        assert server._accept_paused
        assert real.fileno() not in {k.fd for k in server._sel.get_map().values()}
        server._close(client)  # a connection closes: the listener is watched again
        assert not server._accept_paused
        assert real.fileno() in {k.fd for k in server._sel.get_map().values()}
    finally:
        b.close()
        real.close()
        shutil.rmtree(path.parent, ignore_errors=True)
