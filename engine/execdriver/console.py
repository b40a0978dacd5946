"""runc/crun TTY containers: receive the pty master the runtime binary makes inside the
container (--console-socket)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile

from engine.errors import DeadlineExceeded


def receive_console(argv: list[str], *, timeout: float
                    ) -> tuple[subprocess.Popen[bytes], int]:
    """Run `argv + [--console-socket PATH]`-style commands: argv must contain the literal
    "{console}" where the socket path goes. Returns (process, master fd) or raises."""
    tmp = tempfile.mkdtemp(prefix="kpy-console-")  # sun_path is short; bundles are not
    path = os.path.join(tmp, "sock")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(path)
            listener.listen(1)
            listener.settimeout(timeout)
            proc = subprocess.Popen([a.replace("{console}", path) for a in argv],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            try:
                conn, _ = listener.accept()
            except TimeoutError as e:
                proc.kill()
                proc.wait()
                raise DeadlineExceeded(f"{argv[0]} sent no console") from e
            except OSError:
                return proc, -1
            with conn:
                _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        return proc, fds[0] if fds else -1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
