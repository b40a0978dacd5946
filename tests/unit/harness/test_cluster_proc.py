"""State file, stale detection, process ownership, shutdown order, ports."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import cluster, cluster_cli
from tests.harness.cluster_config import COMPONENTS, ClusterError, Layout
from tests.harness.cluster_proc import (
    State,
    alive_in,
    classify,
    free_port,
    owned_by,
    port_in_use,
    read_state,
    shutdown_order,
    terminate,
    write_state,
)

ALL = {name: 100 + i for i, name in enumerate(COMPONENTS)}


def test_state_round_trips(tmp_path: Path) -> None:
    state = State(pids=ALL, interface="kpy-12345678", ports={"apiserver": 6443})
    write_state(tmp_path / "state.json", state)
    assert read_state(tmp_path / "state.json") == state
    assert read_state(tmp_path / "missing.json") is None


def test_damaged_state_reads_as_empty_so_it_is_stale(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"pids": {"etcd": ')
    state = read_state(tmp_path / "state.json")
    assert state == State()
    assert classify(state, True, lambda pid: True).kind == "stale"


def test_classify() -> None:
    state = State(pids=ALL)
    assert classify(None, False, lambda pid: True).kind == "absent"
    assert classify(None, True, lambda pid: True).kind == "stale"
    assert classify(state, True, lambda pid: True).kind == "running"
    verdict = classify(state, True, lambda pid: pid != ALL["kube-apiserver"])
    assert verdict.kind == "stale" and verdict.dead == ("kube-apiserver",)
    partial = State(pids={"etcd": 1})
    assert classify(partial, True, lambda pid: True).dead == COMPONENTS[1:]


def test_owned_by_needs_our_binary_and_our_directory(tmp_path: Path) -> None:
    root = tmp_path / "c"
    mine = ["/opt/bin/etcd", f"--data-dir={root}/etcd"]
    assert owned_by(mine, root)
    assert not owned_by(["/usr/bin/tail", "-f", f"{root}/logs/etcd.log"], root)
    assert not owned_by(["/opt/bin/etcd", f"--data-dir={root}2/etcd"], root)
    assert not owned_by(None, root)
    assert not owned_by([], root)


def test_alive_in_rejects_a_recycled_pid(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30", f"{tmp_path}/"])
    try:
        assert not alive_in(tmp_path)(proc.pid)  # alive, but not one of our components
    finally:
        proc.kill()
        proc.wait()


def test_shutdown_order_stops_etcd_last() -> None:
    named = [("etcd", 1), ("kube-scheduler", 2), ("kube-apiserver", 3),
             ("kube-controller-manager", 4)]
    assert shutdown_order(named) == [{2, 4}, {3}, {1}]
    assert shutdown_order([("etcd", 1)]) == [{1}]
    assert shutdown_order([]) == []


def test_terminate_escalates_to_sigkill() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
           "print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    terminate([proc.pid], alive=lambda pid: proc.poll() is None, grace=0.3)
    assert proc.wait(5) == -9


def test_ports() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert port_in_use(taken)
        with pytest.raises(ClusterError, match=f"port {taken} on 127.0.0.1 "
                                               r"\(CLUSTER_APISERVER_PORT\) is already in use"):
            cluster.choose_ports({"apiserver": taken})
    port = free_port()
    assert 0 < port < 65536 and not port_in_use(port)
    chosen = cluster.choose_ports({"etcd": port})
    assert chosen.etcd == port
    assert len(set(chosen.as_dict().values())) == 5
    with pytest.raises(ClusterError, match="unknown port"):
        cluster.choose_ports({"kubelet": port})


def test_port_overrides_from_environment() -> None:
    env = {"CLUSTER_APISERVER_PORT": "6443", "CLUSTER_SCHEDULER_PORT": "", "OTHER": "1"}
    assert cluster_cli._port_overrides(env) == {"apiserver": 6443}
    with pytest.raises(ClusterError, match="not a port number"):
        cluster_cli._port_overrides({"CLUSTER_ETCD_PORT": "70000"})


def test_status_of_leftovers_without_state_is_stale(tmp_path: Path) -> None:
    assert cluster.status(tmp_path / "none")[0] == "absent"
    (tmp_path / "logs").mkdir()
    (tmp_path / ".lock").touch()
    assert cluster.status(tmp_path)[0] == "absent"  # what `down` keeps
    (tmp_path / "pki").mkdir()
    assert cluster.status(tmp_path)[0] == "stale"


def test_missing_binaries_say_make_tools(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"kube-apiserver.* not found in .*: run `make tools`"):
        cluster.binaries(tmp_path)


@pytest.mark.parametrize(("log", "error"), [
    ("listen tcp 127.0.0.1:1: bind: address already in use", cluster.PortRaceError),
    ("flag provided but not defined: --bogus", ClusterError),
])
def test_dead_component_is_reported_with_its_log(tmp_path: Path, log: str,
                                                 error: type[ClusterError]) -> None:
    layout = Layout(tmp_path)
    layout.logs.mkdir()
    layout.log("etcd").write_text(f"starting\n{log}\n")
    proc = subprocess.Popen(["sh", "-c", "exit 3"])
    proc.wait()
    with pytest.raises(error) as err:
        cluster._died({"etcd": proc}, layout)
    assert type(err.value) is error
    assert "etcd exited with code 3 while starting" in str(err.value)
    assert log in str(err.value)
    running = subprocess.Popen(["sleep", "30"])
    try:
        cluster._died({"etcd": running}, layout)  # alive: nothing to report
    finally:
        running.kill()
        running.wait()
