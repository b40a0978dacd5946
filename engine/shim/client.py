"""The runtime's side of the monitor: is it alive, and call it over its unix socket
(engine.shim.spawner starts monitors)."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from engine import errors
from engine.shim import protocol as P


def monitor_alive(sandbox_dir: Path) -> bool:
    """The pidfile's process lives and is one of ours: monitors are forks of the zygote,
    whose command line is `... -m engine.shim.monitor_zygote ...`."""
    try:
        pid = int((sandbox_dir / P.PIDFILE).read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    if b"engine.shim.monitor" not in cmdline:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


class MonitorClient:
    def __init__(self, sandbox_dir: Path, *, timeout: float = 60.0) -> None:
        self.dir = sandbox_dir
        self.timeout = timeout

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            dirfd = os.open(self.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError as e:
            sock.close()
            raise errors.NotFound(f"sandbox directory {self.dir} is gone") from e
        try:
            # via the directory fd: run dirs exceed the 108-byte sun_path limit
            sock.connect(f"/proc/self/fd/{dirfd}/{P.SOCKET}")
        except (FileNotFoundError, ConnectionRefusedError) as e:
            sock.close()
            raise errors.Unavailable(f"the pod monitor in {self.dir} is not running") from e
        finally:
            os.close(dirfd)
        return sock

    def request(self, sock: socket.socket, op: str, **args: Any) -> dict[str, Any]:
        """Send one request on `sock` and read its one-line reply."""
        try:
            sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
        except TimeoutError as e:
            raise errors.DeadlineExceeded(f"the pod monitor did not take {op}") from e
        except OSError as e:  # reset or broken pipe: the monitor went away
            raise errors.Unavailable(f"the pod monitor dropped the connection ({op}): "
                                     f"{e}") from e
        return self.read_reply(sock, op)

    def read_reply(self, sock: socket.socket, op: str, *, chunk: int = 1) -> dict[str, Any]:
        """One reply line. Read byte by byte by default: on a session connection what
        follows the reply belongs to the session; a one-shot call may read in chunks."""
        try:
            buf = b""
            while not buf.endswith(b"\n"):
                data = sock.recv(chunk)
                if not data:
                    raise errors.Unavailable(f"the pod monitor closed the connection ({op})")
                buf += data
        except TimeoutError as e:
            raise errors.DeadlineExceeded(f"the pod monitor did not answer {op}") from e
        except OSError as e:  # reset or broken pipe: the monitor went away mid-call
            raise errors.Unavailable(f"the pod monitor dropped the connection ({op}): "
                                     f"{e}") from e
        return check_reply(json.loads(buf), who="the pod monitor")

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """One request on a fresh connection, closed after the reply."""
        sock = self.connect()
        try:
            try:
                sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
            except TimeoutError as e:
                raise errors.DeadlineExceeded(f"the pod monitor did not answer {op}") from e
            except OSError as e:  # reset or broken pipe: the monitor went away mid-call
                raise errors.Unavailable(f"the pod monitor dropped the connection ({op}): "
                                         f"{e}") from e
            return self.read_reply(sock, op, chunk=65536)
        finally:
            sock.close()


def check_reply(reply: Any, *, who: str) -> dict[str, Any]:
    """A reply line of the monitor protocol (engine.shim.protocol): the reply when "ok",
    else the EngineError subclass it names (EngineError for a name that is not one)."""
    if not isinstance(reply, dict):
        raise errors.EngineError(f"{who} answered {reply!r}")
    if not reply.get("ok"):
        kind = getattr(errors, str(reply.get("kind")), errors.EngineError)
        if not (isinstance(kind, type) and issubclass(kind, errors.EngineError)):
            kind = errors.EngineError
        raise kind(str(reply.get("error")))
    return reply
