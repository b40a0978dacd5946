"""The CRI unix socket: refuse one a live process serves, replace a stale one, mode 0660."""
from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

from engine.errors import AlreadyExists, InvalidArgument

SOCKET_MODE = 0o660


def socket_path(listen: str) -> Path:
    """`unix:///run/x.sock` -> /run/x.sock (the only scheme engined serves)."""
    prefix = "unix://"
    if not listen.startswith(prefix) or not listen[len(prefix):].startswith("/"):
        raise InvalidArgument(f"listen address {listen!r} must be unix:///absolute/path")
    return Path(listen[len(prefix):])


def is_live(path: Path, *, timeout_s: float = 1.0) -> bool:
    """True when something accepts connections on the socket at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout_s)
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return False
            raise
        return True


def prepare(path: Path) -> None:
    """Make `path` free for our socket: create its directory, remove a stale socket.

    AlreadyExists when a live process serves it or a non-socket file is there.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AlreadyExists(f"{path} exists and is not a socket; refusing to replace it")
    if is_live(path):
        raise AlreadyExists(f"{path} is in use by a live process (another engined?)")
    path.unlink()


def secure(path: Path) -> None:
    """Give the bound socket its final mode: owner and group may connect, others not."""
    os.chmod(path, SOCKET_MODE)
