"""Processes, ports, the advertise interface and the state file of a local control plane."""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.cluster_config import COMPONENTS, ClusterError

log = logging.getLogger(__name__)

# util-linux's setpriv sets the parent-death signal, then execs the component.
SETPRIV = "setpriv"


@dataclass(frozen=True)
class State:
    """What `state.json` records as soon as it is true: pids, interface, ports."""

    pids: Mapping[str, int] = field(default_factory=dict)
    interface: str | None = None
    ports: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"pids": dict(self.pids), "interface": self.interface,
                           "ports": dict(self.ports)}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> State:
        raw: Any = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("state is not a JSON object")
        return cls(pids={str(k): int(v) for k, v in raw.get("pids", {}).items()},
                   interface=raw.get("interface"),
                   ports={str(k): int(v) for k, v in raw.get("ports", {}).items()})


def read_state(path: Path) -> State | None:
    try:
        return State.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, AttributeError):
        # A half-written or damaged file from a killed run: stale by definition.
        return State()


def write_state(path: Path, state: State) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(state.to_json())
    os.replace(tmp, path)


@dataclass(frozen=True)
class Verdict:
    """`running`: every component alive; `stale`: something recorded is gone; `absent`."""

    kind: str
    dead: tuple[str, ...] = ()


def classify(state: State | None, dir_exists: bool,
             alive: Callable[[int], bool]) -> Verdict:
    """Whether a cluster directory holds a running cluster, a stale one, or nothing."""
    if state is None:
        return Verdict("stale" if dir_exists else "absent")
    dead = tuple(name for name in COMPONENTS
                 if name not in state.pids or not alive(state.pids[name]))
    return Verdict("stale", dead) if dead else Verdict("running")


def _proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if stat.rsplit(")", 1)[-1].split()[0] in {"Z", "X"}:
        return None  # a zombie is dead; its parent has just not reaped it yet
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def owned_by(cmdline: list[str] | None, root: Path) -> bool:
    """Whether a command line is one of our components working in `root`."""
    if not cmdline or Path(cmdline[0]).name not in COMPONENTS:
        return False
    marker = f"{root.resolve()}/"
    return any(marker in arg for arg in cmdline[1:])


def alive_in(root: Path) -> Callable[[int], bool]:
    """A liveness test that also rejects a recycled pid now used by another program."""
    return lambda pid: owned_by(_proc_cmdline(pid), root)


def strays(root: Path) -> list[tuple[str, int]]:
    """(component, pid) working in `root`, recorded or not (a run killed mid-start)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        cmdline = _proc_cmdline(int(entry.name))
        if cmdline and owned_by(cmdline, root):
            found.append((Path(cmdline[0]).name, int(entry.name)))
    return found


def shutdown_order(pids: Iterable[tuple[str, int]]) -> list[set[int]]:
    """Stages to stop in: clients of the apiserver, the apiserver, then etcd.

    The apiserver exits in about a second while etcd is up, but lingers for minutes
    retrying storage when etcd went first.
    """
    stages: list[set[int]] = [set(), set(), set()]
    for name, pid in pids:
        stages[{"kube-apiserver": 1, "etcd": 2}.get(name, 0)].add(pid)
    return [stage for stage in stages if stage]


def terminate(pids: Iterable[int], *, alive: Callable[[int], bool],
              grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL what is still there after `grace` seconds; wait until gone."""
    pending = [p for p in set(pids) if alive(p)]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pending and time.monotonic() < deadline:
            time.sleep(0.05)
            pending = [p for p in pending if alive(p)]
        if not pending:
            return
        log.warning("%s did not stop after %s; escalating", pending, sig.name)
    raise ClusterError(f"processes {pending} survive SIGKILL: check them with `ps -p`")


def spawn(argv: list[str], *, log_path: Path, detach: bool) -> subprocess.Popen[bytes]:
    """Start a component in its own session, logging to `log_path`.

    `detach=False` (the pytest fixture) makes the kernel SIGTERM it if the test process
    dies, so a killed test session leaves nothing behind.
    """
    if not detach:
        setpriv = shutil.which(SETPRIV)
        if setpriv is None:
            raise ClusterError("`setpriv` not found: run `make deps` (Debian package util-linux)")
        argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ClusterError("`ip` not found: run `make deps` (Debian package iproute2)") from None


def create_interface(name: str, address: str) -> str:
    """A dummy link holding the advertise address; returns the link type used.

    Kernels built without the dummy driver get a port-less bridge instead, which holds an
    address just the same and carries no traffic.
    """
    delete_interface(name)
    kind = "dummy"
    made = _ip("link", "add", name, "type", kind)
    if made.returncode != 0 and "Unknown device type" in made.stderr:
        kind = "bridge"
        log.info("kernel has no dummy links; holding %s on a port-less bridge", address)
        made = _ip("link", "add", name, "type", kind)
    if made.returncode != 0:
        hint = "run as root (CAP_NET_ADMIN)" if os.geteuid() != 0 else "see the error above"
        raise ClusterError(f"cannot create interface {name}: {made.stderr.strip()}: {hint}")
    for args in (("addr", "add", f"{address}/32", "dev", name), ("link", "set", name, "up")):
        done = _ip(*args)
        if done.returncode != 0:
            delete_interface(name)
            raise ClusterError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return kind


def interface_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def delete_interface(name: str) -> None:
    if not interface_exists(name):
        return
    done = _ip("link", "del", name)
    if done.returncode != 0 and interface_exists(name):
        raise ClusterError(f"cannot remove interface {name}: {done.stderr.strip()}")


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
