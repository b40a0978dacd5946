"""The CNI agent's side of the wire: reading a shim's request, checking who sent it, and
whether this agent's code is still the code on disk. The format is shim.py's."""
from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.networkdriver.plugins import shim
from engine.networkdriver.plugins.invoke import PLUGIN_MODULES

STATUS = "agent-status"  # the module name of a request for the agent's own figures
MAX_FIELD = 64 << 20  # a config larger than this is no CNI config
_FIELDS = 4  # module, source root, environment, stdin


class WireError(Exception):
    """A request that is not one: answered with a CNI error, the shim exits non-zero."""


@dataclass(frozen=True)
class AgentRequest:
    module: str
    root: str
    env: Mapping[str, str]
    stdin: bytes
    netns_fd: int | None  # passed with SCM_RIGHTS, a network namespace


def _recv_exact(conn: socket.socket, n: int, buf: bytearray) -> None:
    while len(buf) < n:
        chunk = conn.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise WireError("the request ended early")
        buf += chunk


def _netns_fd(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The passed fd if it is a network namespace; every other passed fd is closed."""
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i:i + 4], sys.byteorder)
                    for i in range(0, len(data) - len(data) % 4, 4)]
    keep = None
    for fd in fds:
        try:
            is_netns = keep is None and os.readlink(f"/proc/self/fd/{fd}").startswith("net:[")
        except OSError:
            is_netns = False
        if is_netns:
            keep = fd
        else:
            os.close(fd)
    return keep


def read_request(conn: socket.socket) -> AgentRequest:
    """One request from ``conn``; WireError if malformed (any passed fd is closed then)."""
    data, ancdata, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(4 * 4))
    fd = _netns_fd(ancdata)
    try:
        buf = bytearray(data)
        _recv_exact(conn, len(shim.MAGIC), buf)
        if bytes(buf[:len(shim.MAGIC)]) != shim.MAGIC:
            raise WireError("not a kubelet-py CNI shim request")
        at = len(shim.MAGIC)
        fields: list[bytes] = []
        for _ in range(_FIELDS):
            _recv_exact(conn, at + 8, buf)
            size = int.from_bytes(buf[at:at + 8], "little")
            if size > MAX_FIELD:
                raise WireError(f"a request field of {size} bytes")
            _recv_exact(conn, at + 8 + size, buf)
            fields.append(bytes(buf[at + 8:at + 8 + size]))
            at += 8 + size
        module, root, env, stdin = fields
        return AgentRequest(module=module.decode(), root=root.decode(), env=parse_env(env),
                            stdin=stdin, netns_fd=fd)
    except (WireError, OSError, UnicodeDecodeError) as exc:
        if fd is not None:
            os.close(fd)
        raise WireError(str(exc)) from exc


def parse_env(block: bytes) -> dict[str, str]:
    env = {}
    for item in block.split(b"\0") if block else ():
        key, sep, value = item.partition(b"=")
        if sep:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return env


def _ns(pid: int | str, kind: str) -> tuple[int, int]:
    st = os.stat(f"/proc/{pid}/ns/{kind}")
    return st.st_dev, st.st_ino


def peer_problem(conn: socket.socket) -> str | None:
    """Why this agent must not serve the peer (the shim then runs the plugin itself): another
    uid, or another mount or network namespace (paths and the bridge would be another's)."""
    cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    pid, uid = (int.from_bytes(cred[i:i + 4], sys.byteorder) for i in (0, 4))
    if uid != os.geteuid():
        return f"peer uid {uid} is not the agent's uid {os.geteuid()}"
    if pid <= 0:
        return "peer process outside the agent's pid namespace"
    for kind in ("mnt", "net"):
        try:
            if _ns(pid, kind) != _ns("self", kind):
                return f"peer in another {kind} namespace"
        except OSError as exc:
            return f"cannot read the peer's {kind} namespace: {exc.strerror}"
    return None


def check_module(req: AgentRequest, root: str) -> str | None:
    """Why the request names code this agent does not run (fallback), else None."""
    if req.root != root:
        return f"the shim's source tree {req.root} is not the agent's {root}"
    if req.module not in PLUGIN_MODULES:
        return f"{req.module!r} is not one of our plugins"
    return None


Stamp = dict[str, tuple[int, int, int]]


def code_stamp(root: Path) -> Stamp:
    """Identity of the agent's code on disk: the plugin package's files and dir, and the
    packages above it (a cheap stat each)."""
    package = root / "engine" / "networkdriver" / "plugins"
    paths = [package, *sorted(package.glob("*.py")), root / "engine" / "__init__.py",
             root / "engine" / "networkdriver" / "__init__.py"]
    out = {}
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        out[str(p)] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def stale(stamp: Stamp) -> str | None:
    """Which file changed since ``stamp`` was taken, else None."""
    for path, ident in stamp.items():
        try:
            st = os.stat(path)
        except OSError:
            return f"{path} is gone"
        if (st.st_ino, st.st_size, st.st_mtime_ns) != ident:
            return f"{path} changed"
    return None
