"""The CRI socket: 0660, refuses a live one or a non-socket, replaces a stale one."""
from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from cri.server.listener import socket_path
from cri.server.ports import Ports
from cri.server.serve import CriServer
from engine.errors import AlreadyExists, InvalidArgument


def test_socket_path_parsing() -> None:
    assert socket_path("unix:///run/x.sock") == Path("/run/x.sock")
    for bad in ("tcp://127.0.0.1:1", "unix://relative.sock", "/run/x.sock"):
        with pytest.raises(InvalidArgument):
            socket_path(bad)


def test_socket_mode_and_removal_on_stop(sock_dir: Path) -> None:
    server = CriServer(listen=f"unix://{sock_dir}/sub/cri.sock", ports=Ports())
    server.start()
    try:
        mode = server.path.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o660
    finally:
        server.stop(0)
    assert not server.path.exists()


def test_refuses_a_socket_served_by_a_live_process(sock_dir: Path) -> None:
    path = sock_dir / "cri.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen(1)
        with pytest.raises(AlreadyExists, match="in use by a live process"):
            CriServer(listen=f"unix://{path}", ports=Ports()).start()
        assert path.exists()  # left alone


def test_replaces_a_stale_socket(sock_dir: Path) -> None:
    path = sock_dir / "cri.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    server = CriServer(listen=f"unix://{path}", ports=Ports())
    server.start()
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(path))
        probe.close()
    finally:
        server.stop(0)


def test_refuses_to_replace_a_regular_file(sock_dir: Path) -> None:
    path = sock_dir / "cri.sock"
    path.write_text("precious")
    with pytest.raises(AlreadyExists, match="not a socket"):
        CriServer(listen=f"unix://{path}", ports=Ports()).start()
    assert path.read_text() == "precious"
