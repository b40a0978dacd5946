"""The native exec driver: our libcontainer (engine.execdriver.nsexec) in a small helper."""
from __future__ import annotations

import json
import select
import socket
import subprocess
import time
from pathlib import Path

from engine.cgroups.detect import manager
from engine.cgroups.v1 import CgroupV1
from engine.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument
from engine.execdriver.base import ExecProcess, Stdio
from engine.execdriver.codec import dumps, to_jsonable, write_atomic
from engine.execdriver.helper import helper_env, python_argv
from engine.execdriver.spec import DEFAULT_DEVICE_RULES, InitSpec

SPEC_FILE = "init.json"


def _read_message(sock: socket.socket, buf: bytearray, deadline: float) -> dict[str, object]:
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise DeadlineExceeded("container init did not report in time")
        chunk = sock.recv(65536)
        if not chunk:
            return {}
        buf.extend(chunk)
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    msg = json.loads(line)
    assert isinstance(msg, dict)
    return msg


class NativeDriver:
    name = "native"

    def __init__(self) -> None:
        self._sync: dict[str, socket.socket] = {}

    def create(self, spec: InitSpec, *, bundle: Path, stdio: Stdio, timeout: float) -> int:
        spec_path = bundle / SPEC_FILE
        if spec.cgroup_path:
            cgroups = manager()
            cgroups.create(spec.cgroup_path, spec.resources)
            if isinstance(cgroups, CgroupV1) and not spec.privileged:
                cgroups.restrict_devices(spec.cgroup_path, list(DEFAULT_DEVICE_RULES))
        write_atomic(spec_path, dumps(spec))
        ours, theirs = socket.socketpair()
        try:
            helper = subprocess.Popen(
                python_argv("engine.execdriver.nsexec", "init", str(spec_path),
                            str(theirs.fileno())),
                stdin=stdio.stdin, stdout=stdio.stdout, stderr=stdio.stderr,
                pass_fds=(theirs.fileno(),), env=helper_env(), close_fds=True)
        finally:
            theirs.close()
        deadline = time.monotonic() + timeout
        buf = bytearray()
        try:
            first = _read_message(ours, buf, deadline)
            helper.wait(timeout=max(deadline - time.monotonic(), 0.1))
            if "pid" not in first:
                raise InvalidArgument(f"container init failed: {first.get('error', 'no reason')}")
            pid = int(str(first["pid"]))
            second = _read_message(ours, buf, deadline)
            if not second.get("ready"):
                raise InvalidArgument(
                    f"container init failed: {second.get('error', 'exited before ready')}")
        except BaseException:
            ours.close()
            if helper.poll() is None:
                helper.kill()
                helper.wait()
            raise
        self._sync[spec.id] = ours
        return pid

    def start(self, spec: InitSpec, *, bundle: Path, timeout: float) -> None:
        sock = self._sync.pop(spec.id, None)
        if sock is None:
            raise FailedPrecondition(f"container {spec.id} was not created by this monitor")
        with sock:
            sock.sendall(b"S")
            msg = _read_message(sock, bytearray(), time.monotonic() + timeout)
        if msg:  # EOF = the sync socket closed on exec: started
            raise InvalidArgument(f"container start failed: {msg.get('error', msg)}")

    def delete(self, spec: InitSpec, *, bundle: Path) -> None:
        sock = self._sync.pop(spec.id, None)
        if sock is not None:
            sock.close()
        if spec.cgroup_path:
            manager().destroy(spec.cgroup_path)

    def exec_argv(self, spec: InitSpec, *, bundle: Path, pid: int,
                  process: ExecProcess) -> list[str]:
        return python_argv("engine.execdriver.nsexec", "exec", str(bundle / SPEC_FILE),
                           str(pid), json.dumps(to_jsonable(process)))
