"""A monitor process's pod bookkeeping, without forking: adoption up to K, precise refusals,
one pod's shutdown leaving the others served (tests/integration/shim runs real pods)."""
from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import errors
from engine.shim import protocol as P
from engine.shim.monitor import MonitorProcess
from engine.shim.spawner import MonitorSpawner


@pytest.fixture
def host() -> Iterator[MonitorProcess]:
    mp = MonitorProcess()
    yield mp
    for pod in list(mp.pods.values()):
        pod.close()
    mp.sel.close()


def sandbox(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    return d


def call(mp: MonitorProcess, d: Path, req: dict[str, object]) -> dict[str, object]:
    """One request to the pod of `d` through a socket pair, as the loop would hand it."""
    ours, theirs = socket.socketpair()
    pod = mp.pods[d]
    ours.sendall(json.dumps(req).encode() + b"\n")
    pod.client(theirs, bytearray())
    reply = json.loads(ours.recv(65536))
    ours.close()
    theirs.close()
    assert isinstance(reply, dict)
    return reply


def test_adopts_up_to_k_pods_then_refuses(host: MonitorProcess, tmp_path: Path) -> None:
    first = sandbox(tmp_path, "a")
    host.adopt(first)
    assert int((first / P.PIDFILE).read_text()) == os.getpid()
    assert (first / P.SOCKET).exists()
    second = sandbox(tmp_path, "b")
    reply = call(host, first, {"op": "adopt", "dir": str(second), "pods_per_monitor": 2})
    assert reply == {"ok": True, "pid": os.getpid(), "pods": 2}
    assert int((second / P.PIDFILE).read_text()) == os.getpid()
    third = sandbox(tmp_path, "c")
    reply = call(host, second, {"op": "adopt", "dir": str(third), "pods_per_monitor": 2})
    assert reply["kind"] == "FailedPrecondition" and "no room" in str(reply["error"])
    assert not (third / P.PIDFILE).exists() and not (third / P.SOCKET).exists()
    assert call(host, first, {"op": "ping"})["pods"] == [str(first), str(second)]


@pytest.mark.parametrize(("req", "kind", "message"), [
    ({"op": "adopt", "dir": "rel", "pods_per_monitor": 8}, "InvalidArgument", "absolute"),
    ({"op": "adopt", "dir": "/nonexistent/kpy", "pods_per_monitor": 8}, "NotFound", "exist"),
    ({"op": "adopt", "dir": "/", "pods_per_monitor": 0}, "InvalidArgument", "positive"),
    ({"op": "adopt", "dir": "/", "pods_per_monitor": True}, "InvalidArgument", "positive"),
    ({"op": "fly"}, "InvalidArgument", "unknown monitor op 'fly'"),
])
def test_bad_adopts_are_precise(host: MonitorProcess, tmp_path: Path, req: dict[str, object],
                                kind: str, message: str) -> None:
    d = sandbox(tmp_path, "a")
    host.adopt(d)
    reply = call(host, d, req)
    assert reply["ok"] is False and reply["kind"] == kind and message in str(reply["error"])
    assert list(host.pods) == [d]


def test_a_served_dir_is_not_adopted_twice(host: MonitorProcess, tmp_path: Path) -> None:
    d = sandbox(tmp_path, "a")
    host.adopt(d)
    reply = call(host, d, {"op": "adopt", "dir": str(d), "pods_per_monitor": 8})
    assert reply["kind"] == "AlreadyExists"


def test_shutting_one_pod_down_keeps_the_others(host: MonitorProcess, tmp_path: Path) -> None:
    a, b = sandbox(tmp_path, "a"), sandbox(tmp_path, "b")
    host.adopt(a)
    host.adopt(b)
    assert call(host, a, {"op": "shutdown"}) == {"ok": True}
    assert list(host.pods) == [b]
    assert not (a / P.SOCKET).exists() and not (a / P.PIDFILE).exists()
    assert (b / P.SOCKET).exists() and (b / P.PIDFILE).exists()
    assert call(host, b, {"op": "ping"})["pods"] == [str(b)]


def test_a_shut_down_pod_refuses_further_requests(host: MonitorProcess,
                                                  tmp_path: Path) -> None:
    a, b = sandbox(tmp_path, "a"), sandbox(tmp_path, "b")
    host.adopt(a)
    host.adopt(b)
    pod = host.pods[a]
    ours, theirs = socket.socketpair()
    ours.sendall(b'{"op": "shutdown"}\n{"op": "ping"}\n')
    pod.client(theirs, bytearray())
    replies = [json.loads(line) for line in ours.recv(65536).splitlines()]
    ours.close()
    theirs.close()
    assert replies[0] == {"ok": True}
    assert replies[1]["kind"] == "FailedPrecondition" and "shut down" in replies[1]["error"]


def test_pods_per_monitor_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument, match="at least 1"):
        MonitorSpawner(tmp_path).spawn(tmp_path, pods_per_monitor=0)
