"""A real control plane on loopback: etcd, kube-apiserver, controller manager, scheduler.

`python -m tests.harness.cluster up|down|status` (what `make cluster` runs) and the
session-scoped pytest fixture `control_plane` share this code. Everything lives under one
directory (`.cluster/` or a test's temp dir); see docs in mk/cluster.mk.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import cluster_bootstrap, cluster_files
from tests.harness.cluster_api import Endpoint, wait_for
from tests.harness.cluster_config import (
    COMPONENTS,
    PORT_NAMES,
    BootstrapToken,
    ClusterEnv,
    ClusterError,
    Layout,
    Ports,
    component_args,
    interface_for,
)
from tests.harness.cluster_proc import (
    State,
    alive_in,
    classify,
    create_interface,
    delete_interface,
    free_port,
    log_tail,
    port_in_use,
    read_state,
    shutdown_order,
    spawn,
    strays,
    terminate,
    write_state,
)
from tests.harness.pki import ca_cert_hash, verify_detached_jws
from tests.harness.prereq import need_root, need_tool

log = logging.getLogger(__name__)

TOOLS = (*COMPONENTS, "kubectl")
APISERVER_TIMEOUT = 120.0
COMPONENT_TIMEOUT = 60.0
# Children started by this process, reaped on `down` (the fixture's are not detached).
_children: dict[int, subprocess.Popen[bytes]] = {}
LOCK = ".lock"
PORT_ATTEMPTS = 3  # free ports are picked before binding: another process may win the race
KEEP = ("logs", LOCK)  # what `down` leaves: the logs for a post-mortem, and the lock


class PortRaceError(ClusterError):
    """A component could not bind the free port chosen for it."""


@dataclass(frozen=True)
class ControlPlane:
    """A running cluster: where to reach it and how to drive it."""

    env: ClusterEnv
    tools: Path
    already_running: bool = False
    start_seconds: float = 0.0

    @property
    def layout(self) -> Layout:
        return Layout(self.env.cluster_dir)

    @property
    def kubeconfig(self) -> Path:
        return self.env.kubeconfig

    @property
    def server(self) -> str:
        return self.env.server

    @property
    def token(self) -> str:
        return self.env.token

    @property
    def ca_cert_hash(self) -> str:
        return self.env.ca_cert_hash

    def admin(self) -> Endpoint:
        return _admin(self.layout, self.env.ports.apiserver)

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run kubectl as cluster admin; with `check`, a failure raises with its stderr."""
        argv = [str(self.tools / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): "
                                 f"{done.stderr.strip()}")
        return done


def _admin(layout: Layout, port: int) -> Endpoint:
    return Endpoint(port, ca=layout.cert("ca"), client_cert=layout.cert("admin"),
                    client_key=layout.key("admin"))


def _component_endpoints(layout: Layout, ports: Ports) -> dict[str, tuple[Endpoint, str]]:
    return {
        "kube-apiserver": (_admin(layout, ports.apiserver), "/readyz"),
        "kube-controller-manager": (_admin(layout, ports.controller_manager), "/healthz"),
        "kube-scheduler": (_admin(layout, ports.scheduler), "/healthz"),
    }


def binaries(tools: Path) -> dict[str, Path]:
    found = {name: tools / name for name in TOOLS}
    missing = [name for name, path in found.items() if not os.access(path, os.X_OK)]
    if missing:
        raise ClusterError(f"{', '.join(missing)} not found in {tools}: run `make tools`")
    return found


def choose_ports(overrides: Mapping[str, int]) -> Ports:
    """Free ports on 127.0.0.1, except the ones the user pinned (which must be free)."""
    for name, port in overrides.items():
        if name not in PORT_NAMES:
            raise ClusterError(f"unknown port {name!r}; known: {', '.join(PORT_NAMES)}")
        if port_in_use(port):
            raise ClusterError(
                f"port {port} on 127.0.0.1 (CLUSTER_{name.upper()}_PORT) is already in use: "
                f"stop what listens there (`ss -ltnp 'sport = :{port}'`) or pick another port")
    chosen: dict[str, int] = dict(overrides)
    for name in PORT_NAMES:
        while name not in chosen:
            port = free_port()
            if port not in chosen.values():
                chosen[name] = port
    return Ports(**chosen)


def healthy(layout: Layout, ports: Ports) -> bool:
    return all(ep.healthy(path) for ep, path in _component_endpoints(layout, ports).values())


def _has_leftovers(root: Path) -> bool:
    return root.is_dir() and any(p.name not in KEEP for p in root.iterdir())


def status(root: Path) -> tuple[str, ClusterEnv | None]:
    """`running` (every component alive and healthy), `stale` or `absent`, with the env."""
    layout = Layout(root.resolve())
    verdict = classify(read_state(layout.state_file), _has_leftovers(layout.root),
                       alive_in(layout.root))
    if verdict.kind != "running":
        return verdict.kind, None
    try:
        env = ClusterEnv.parse(layout.env_file.read_text())
    except (OSError, ValueError):
        return "stale", None  # processes alive but the start never finished
    return ("running", env) if healthy(layout, env.ports) else ("stale", None)


def _died(procs: Mapping[str, subprocess.Popen[bytes]], layout: Layout) -> None:
    for name, proc in procs.items():
        code = proc.poll()
        if code is not None:
            tail = log_tail(layout.log(name))
            message = (f"{name} exited with code {code} while starting (%s); "
                       f"last lines of {layout.log(name)}:\n{tail}")
            if "address already in use" in tail:
                raise PortRaceError(message % "a port was taken meanwhile: run it again")
            raise ClusterError(message % "fix the cause shown in its log")


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One `up` or `down` at a time per cluster directory (two terminals, two sessions)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another `up` or `down` works in %s; waiting for it", root)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(root: Path, *, tools: Path, ports: Mapping[str, int] | None = None,
       detach: bool = True, timeout: float = APISERVER_TIMEOUT) -> ControlPlane:
    """Start a cluster in `root`, or return the healthy one already there (idempotent).

    With `detach=False` the components get SIGTERM when the calling thread exits.
    """
    layout = Layout(root.resolve())
    bins = binaries(tools)
    chosen_overrides = dict(ports or {})
    with _locked(layout.root):
        kind, env = status(layout.root)
        if kind == "running" and env is not None:
            return ControlPlane(env=env, tools=tools, already_running=True)
        if kind == "stale":
            log.warning("stale cluster state in %s (a killed or failed run): cleaning it up",
                        layout.root)
            _down(layout)
        started = time.monotonic()
        for attempt in range(PORT_ATTEMPTS):
            chosen = choose_ports(chosen_overrides)
            try:
                return _start(layout, bins=bins, ports=chosen, tools=tools, detach=detach,
                              timeout=timeout, started=started)
            except PortRaceError:
                _down(layout)
                if chosen_overrides or attempt == PORT_ATTEMPTS - 1:
                    raise
                log.warning("a free port was taken before its component bound it; retrying")
            except BaseException:
                _down(layout)
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")


def _start(layout: Layout, *, bins: Mapping[str, Path], ports: Ports, tools: Path,
           detach: bool, timeout: float, started: float) -> ControlPlane:
    iface, address = interface_for(layout.root)
    layout.logs.mkdir(parents=True, exist_ok=True)
    state = State(interface=iface, ports=ports.as_dict())
    write_state(layout.state_file, state)  # before the link exists, so `down` finds it
    create_interface(iface, address)
    now = datetime.datetime.now(datetime.UTC)
    server = f"https://127.0.0.1:{ports.apiserver}"
    ca = cluster_files.write_pki(layout, advertise=address, now=now)
    cluster_files.write_kubeconfigs(layout, ca=ca, server=server, now=now)

    procs: dict[str, subprocess.Popen[bytes]] = {}

    def launch(name: str) -> None:
        nonlocal state
        argv = [str(bins[name]), *component_args(name, layout, ports, advertise=address)]
        proc = spawn(argv, log_path=layout.log(name), detach=detach)
        procs[name] = _children[proc.pid] = proc
        state = State(pids={**state.pids, name: proc.pid}, interface=iface,
                      ports=state.ports)
        write_state(layout.state_file, state)

    def check() -> None:
        _died(procs, layout)

    endpoints = _component_endpoints(layout, ports)
    launch("etcd")
    launch("kube-apiserver")  # it retries etcd itself: no need to wait for etcd first
    api, readyz = endpoints["kube-apiserver"]
    waited = wait_for("kube-apiserver /readyz", lambda: api.healthy(readyz),
                      timeout=timeout, check=check)
    log.info("kube-apiserver ready after %.1f s", waited)
    launch("kube-controller-manager")
    launch("kube-scheduler")
    token = BootstrapToken.generate()
    info = cluster_files.kubeconfig(server=server, ca_pem=ca.cert_pem, cluster_name="")
    cluster_bootstrap.create_all(api, token=token,
                                 cluster_info_kubeconfig=cluster_files.dump_kubeconfig(info))
    for name in ("kube-controller-manager", "kube-scheduler"):
        ep, path = endpoints[name]
        waited = wait_for(f"{name} {path}", functools.partial(ep.healthy, path),
                          timeout=COMPONENT_TIMEOUT, check=check)
        log.info("%s healthy after %.1f s more", name, waited)
    signed: list[tuple[str, str]] = []

    def cluster_info_signed() -> bool:
        got = cluster_bootstrap.signed_cluster_info(api, token)
        if got:
            signed.append(got)
        return bool(got)

    wait_for("the bootstrapsigner's signature on cluster-info", cluster_info_signed,
             timeout=COMPONENT_TIMEOUT, check=check)
    log.info("cluster-info signed %.1f s after start", time.monotonic() - started)
    kubeconfig_yaml, jws = signed[-1]
    if not verify_detached_jws(jws, kubeconfig_yaml, token_id=token.token_id,
                               token_secret=token.secret):
        raise ClusterError("cluster-info carries a JWS that does not verify with the token")
    env = ClusterEnv(kubeconfig=layout.admin_kubeconfig, server=server, token=token.value,
                     ca_cert_hash=ca_cert_hash(ca.cert_pem), ca_cert=layout.cert("ca"),
                     cluster_dir=layout.root, advertise_address=address, ports=ports)
    cluster_files.write_text(layout.env_file, env.render())
    return ControlPlane(env=env, tools=tools, start_seconds=time.monotonic() - started)


def down(root: Path) -> None:
    """Stop every component working in `root`, remove its interface and state; keep logs."""
    layout = Layout(root.resolve())
    if not layout.root.is_dir():
        delete_interface(interface_for(layout.root)[0])
        return
    with _locked(layout.root):
        _down(layout)


def _down(layout: Layout) -> None:
    state = read_state(layout.state_file) or State()
    alive = alive_in(layout.root)
    named = {*state.pids.items(), *strays(layout.root)}
    for stage in shutdown_order(named):
        terminate(stage, alive=alive)
    for _, pid in named:
        proc = _children.pop(pid, None)
        if proc is not None:
            proc.wait()
    delete_interface(state.interface or interface_for(layout.root)[0])
    for entry in layout.root.iterdir():
        if entry.name in KEEP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A cluster of its own for the test session (never the developer's `make cluster`)."""
    need_root()
    tools = need_tool("kube-apiserver").parent
    for name in TOOLS:
        need_tool(name)
    root = tmp_path_factory.mktemp("cluster")
    cluster = up(root, tools=tools, detach=False)
    try:
        yield cluster
    finally:
        down(root)


if __name__ == "__main__":
    from tests.harness.cluster_cli import main

    sys.exit(main())
