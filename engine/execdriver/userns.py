"""Pod user namespaces (CRI NamespaceMode POD with uid/gid mappings).

The pod's user namespace is made first, its maps written from outside by a process that is
root in the host's namespace, and the pod's network, IPC, UTS (and shared PID) namespaces
are then made *inside* it, so they are owned by it: root of the pod is root over its own
network and IPC, and nothing else. The namespaces are pinned like the others, as nsfs bind
mounts under <sandbox>/ns/ (user included), by the process outside: mounting in the host's
mount namespace needs the host's CAP_SYS_ADMIN, which a process inside has lost.

Containers join the user namespace before the others (engine.execdriver.nsexec), runc and
crun are given its path and maps; the rootfs and volumes are ID-mapped mounts made by the
runtime (engine.runtime.idmapped).

Stdlib and engine.sys only: runs in forks of the pod monitor.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable, Sequence

from engine.errors import InvalidArgument
from engine.execdriver.spec import IDMapping
from engine.sys import linux as L

MAX_ID = 2**32 - 1  # (uid_t)-1 is never a valid id
POD_NAMESPACES = ("user", "net", "ipc", "uts")
SETUP_TIMEOUT = 30.0  # seconds for each step of the helper inside


def validate(uids: Sequence[IDMapping], gids: Sequence[IDMapping]) -> None:
    """What a pod's user namespace must have: exactly one uid and one gid range, each
    mapping container id 0 (the pod's root), with host ids inside the 32-bit id space."""
    for kind, maps in (("uid", uids), ("gid", gids)):
        if len(maps) != 1:
            raise InvalidArgument(f"user namespace: exactly one {kind} mapping is supported, "
                                  f"got {len(maps)}")
        m = maps[0]
        if m.size < 1:
            raise InvalidArgument(f"user namespace: {kind} mapping length must be at least 1")
        if m.container_id != 0:
            raise InvalidArgument(f"user namespace: the {kind} mapping must start at container "
                                  f"id 0 (got {m.container_id}): container id 0 is not mapped")
        if m.host_id + m.size > MAX_ID or m.container_id + m.size > MAX_ID:
            raise InvalidArgument(f"user namespace: {kind} mapping {m.host_id}+{m.size} "
                                  "leaves the 32-bit id space")


def map_text(maps: Sequence[IDMapping]) -> str:
    """The /proc/<pid>/uid_map (gid_map) text for `maps`."""
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)


def to_host(maps: Sequence[IDMapping], container_id: int) -> int | None:
    """The host id container id `container_id` maps to, or None when it is not mapped."""
    for m in maps:
        if m.container_id <= container_id < m.container_id + m.size:
            return m.host_id + container_id - m.container_id
    return None


def become_root() -> None:
    """Right after joining (or making) a user namespace: take its root's ids. Until then the
    process runs with host ids the namespace does not map, with which it can create no file
    on an ID-mapped mount; its capabilities in the namespace are kept (root to root)."""
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _expect(sock: socket.socket, token: bytes) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    if not data.startswith(token):
        raise InvalidArgument(data[len(b"E"):].decode(errors="replace").strip()
                              if data.startswith(b"E") else "namespace helper exited early")
    return data[len(token):].strip()


def _inside(sock: socket.socket, *, share_pid: bool, configure: Callable[[], None],
            pid_holder: Callable[[], None]) -> None:
    """The helper child: a new user namespace; once the parent mapped it, the pod's other
    namespaces inside it (and the PID namespace's holder), then wait to be pinned."""
    L.unshare(L.CLONE_NEWUSER)
    sock.sendall(b"U\n")
    _expect(sock, b"M")
    become_root()
    L.unshare(L.CLONE_NEWNET | L.CLONE_NEWIPC | L.CLONE_NEWUTS
              | (L.CLONE_NEWPID if share_pid else 0))
    configure()
    holder = 0
    if share_pid:
        holder = os.fork()
        if holder == 0:
            sock.close()
            pid_holder()
    sock.sendall(f"R{holder}\n".encode())
    _expect(sock, b"X")


def make_pod_namespaces(ns_dir: str, *, uids: Sequence[IDMapping],
                        gids: Sequence[IDMapping], share_pid: bool,
                        configure: Callable[[], None], pid_holder: Callable[[], None]) -> None:
    """In a fork of the monitor (host root): the pod's namespaces owned by a new user
    namespace with these maps, bind-mounted at <ns_dir>/{user,net,ipc,uts[,pid]}.
    `configure` runs inside them (hostname, sysctls, loopback); `pid_holder` is the body of
    the PID namespace's init."""
    validate(uids, gids)
    ours, theirs = socket.socketpair()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            ours.close()
            _inside(theirs, share_pid=share_pid, configure=configure, pid_holder=pid_holder)
            code = 0
        except BaseException as e:
            reason = f"E{type(e).__name__}: {e}".replace("\n", " ")
            with contextlib.suppress(OSError):
                theirs.sendall(reason.encode() + b"\n")
        finally:
            os._exit(code)
    theirs.close()
    try:
        with ours:
            ours.settimeout(SETUP_TIMEOUT)
            _expect(ours, b"U")
            # setgroups stays "allow": a privileged parent writes the maps, and the pod's
            # root may set its supplementary groups as any container root does.
            with open(f"/proc/{child}/uid_map", "w") as f:
                f.write(map_text(uids))
            with open(f"/proc/{child}/gid_map", "w") as f:
                f.write(map_text(gids))
            ours.sendall(b"M\n")
            holder = int(_expect(ours, b"R") or 0)
            for t in POD_NAMESPACES:
                bind_ns(f"/proc/{child}/ns/{t}", os.path.join(ns_dir, t))
            if holder:
                bind_ns(f"/proc/{holder}/ns/pid", os.path.join(ns_dir, "pid"))
            ours.sendall(b"X\n")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)  # stuck or not, it must not outlive the failure
        raise
    finally:
        os.waitpid(child, 0)


def bind_ns(source: str, target: str) -> None:
    """Pin the namespace file `source` at `target` (an nsfs bind mount)."""
    with open(target, "a"):
        pass
    L.mount(source, target, "", L.MS_BIND)


def mappings(data: object) -> tuple[IDMapping, ...]:
    """Mappings from their JSON form (a monitor request): [{container_id, host_id, size}]."""
    if not data:
        return ()
    if not isinstance(data, list):
        raise InvalidArgument(f"ID mappings must be a list, got {data!r}")
    try:
        return tuple(IDMapping(container_id=int(m["container_id"]), host_id=int(m["host_id"]),
                               size=int(m["size"])) for m in data)
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidArgument(f"malformed ID mapping in {data!r}") from e
