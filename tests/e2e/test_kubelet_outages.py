"""Outages on the real control plane, one shared pod set per runtime (these are slow):
a 60 s kube-apiserver outage leaves running pods alone and statuses catch up after; a
killed kubelet-py turns the node NotReady within the controller manager's grace period,
and restarting it changes nothing in the running pods.

Both runtimes' nodes go through the scenario at the same time, in two threads, and share
the one kube-apiserver outage (a cluster-wide event): the same checks per runtime, in half
the time. Each runtime's test reports what its own thread saw."""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_kubelet_join import wait
from tests.e2e.test_kubelet_pods import (  # noqa: F401 (fixtures)
    BUSYBOX,
    Node,
    Runtime,
    _ready,
    _state,
    containerd,
    engined,
    joined_node,
    local_registry,
)
from tests.harness import cluster as harness
from tests.harness.cluster import ControlPlane
from tests.harness.cluster_proc import State, read_state, spawn, write_state
from tests.harness.containerd import Containerd

pytestmark = pytest.mark.e2e
OUTAGE = 60.0
# kube-controller-manager defaults (the harness sets neither flag): the node lifecycle
# controller checks every 5 s and gives up on a node 50 s after its last heartbeat.
NODE_MONITOR_GRACE = 50.0
NODE_MONITOR_PERIOD = 5.0
LEASE_RENEW = 10.0


def stop_component(cluster: ControlPlane, name: str = "kube-apiserver") -> list[str]:
    """Kill one of the harness's components (SIGKILL: a crash, and no wait for a graceful
    drain of watches); return its argv for `start_component`."""
    state = read_state(cluster.layout.state_file)
    assert state is not None and name in state.pids
    pid = state.pids[name]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    os.kill(pid, signal.SIGKILL)
    child = harness._children.pop(pid, None)
    if child is not None:
        child.wait(30)
    else:
        wait(lambda: not Path(f"/proc/{pid}").exists(), f"{name} exit", timeout=30)
    return [a.decode() for a in argv]


def start_component(cluster: ControlPlane, argv: list[str],
                    name: str = "kube-apiserver") -> None:
    """The same component again, recorded where the harness's `down` finds it."""
    layout = cluster.layout
    proc = spawn(argv, log_path=layout.logs / f"{name}.restarted.log", detach=False)
    harness._children[proc.pid] = proc
    state = read_state(layout.state_file)
    assert state is not None
    write_state(layout.state_file, State(
        pids={**state.pids, name: proc.pid}, interface=state.interface, ports=state.ports))
    if name == "kube-apiserver":
        wait(lambda: cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
             "kube-apiserver ready again", timeout=60)


def refresh_controllers(cluster: ControlPlane) -> None:
    """After an API server restart the controller manager's and scheduler's informers lag
    for minutes (they log "read version ... is not as new as written version"): restart
    both so the tests after this one get a working cluster, and wait for a controller."""
    for name in ("kube-controller-manager", "kube-scheduler"):
        start_component(cluster, stop_component(cluster, name), name)
    ns = f"kpy-probe-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", ns)
    try:
        wait(lambda: cluster.kubectl("get", "serviceaccount", "-n", ns, "default",
                                     check=False).returncode == 0,
             "the controller manager working again", timeout=60)
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _running_ids(n: Node) -> set[str]:
    out = subprocess.run([str(n.cluster.tools / "crictl"), "--runtime-endpoint",
                          n.runtime.endpoint, "ps", "-q", "--state", "Running"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def _fingerprint(pod: Any) -> tuple[str, int, str, str]:
    cs = _state(pod)
    return (cs["containerID"], cs["restartCount"], pod["status"]["podIP"],
            pod["status"]["startTime"])


RUNTIMES = ("containerd", "engined")
BARRIER_TIMEOUT = 300.0


class SharedOutage:
    """One kube-apiserver outage for the scenarios of several nodes, each in its thread.

    The scenarios call `ready`, `begin` (returns when the API server went down) and `end`
    (returns when it is back); the fixture's own thread runs `conduct`, which brings it
    back: components started with `detach=False` get SIGTERM when the *thread* that started
    them ends, so a scenario thread must never be the one that starts them."""

    def __init__(self, cluster: ControlPlane, parties: int) -> None:
        self._cluster = cluster
        self._argv: list[str] = []
        self.stopped = 0.0
        self._ready = threading.Barrier(parties, timeout=BARRIER_TIMEOUT)
        self._begin = threading.Barrier(parties + 1, action=self._stop, timeout=BARRIER_TIMEOUT)
        self._end = threading.Barrier(parties + 1, timeout=BARRIER_TIMEOUT)
        self._back = threading.Barrier(parties + 1, timeout=BARRIER_TIMEOUT)

    def _stop(self) -> None:
        self._argv = stop_component(self._cluster)
        self.stopped = time.monotonic()

    def ready(self) -> None:
        self._ready.wait()

    def begin(self) -> float:
        self._begin.wait()
        return self.stopped

    def end(self) -> None:
        self._end.wait()
        self._back.wait()

    def abort(self) -> None:
        """A scenario failed before the outage: release the others (they fail too)."""
        for barrier in (self._ready, self._begin, self._end, self._back):
            barrier.abort()

    def conduct(self) -> None:
        """Take part in the outage, then bring the API server (and the controllers) back;
        whatever happened, it runs again afterwards."""
        with contextlib.suppress(threading.BrokenBarrierError):  # a scenario's own failure
            try:
                self._begin.wait()
                self._end.wait()
            finally:
                if self._argv:
                    argv, self._argv = self._argv, []
                    try:
                        start_component(self._cluster, argv)
                        refresh_controllers(self._cluster)
                    except BaseException:
                        self._back.abort()
                        raise
            self._back.wait()


def scenario(node: Node, outage: SharedOutage) -> None:
    try:
        before, steady_id = _kill_and_restart_the_kubelet(node)
        outage.ready()  # the pods that must exit during the outage start together
        node.create_pod("ender", [{"name": "ender", "image": BUSYBOX,
                                   "command": ["sh", "-c", "sleep 20; exit 0"]}],
                        restartPolicy="Never")
        wait(lambda: (p := node.pod("ender")) and p["status"].get("phase") == "Running",
             "ender Running", timeout=60)
    except BaseException:
        outage.abort()
        raise
    # 3. The API server goes away for 60 s: pods keep running, the kubelet keeps going,
    # and an exit that happens meanwhile reaches the API once it is back.
    stopped = outage.begin()
    try:
        time.sleep(max(0.0, OUTAGE / 2 - (time.monotonic() - stopped)))
        assert steady_id in _running_ids(node)
        assert node.kubelet.proc.poll() is None, node.kubelet.output()[-3000:]
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
    finally:
        outage.end()
    print(f"[{node.runtime.name}] apiserver back after {time.monotonic() - stopped:.1f}s")
    assert node.kubelet.proc.poll() is None, node.kubelet.output()[-3000:]
    assert steady_id in _running_ids(node)
    caught_up = time.monotonic()
    wait(lambda: (p := node.pod("ender")) and p["status"].get("phase") == "Succeeded",
         "ender's exit reported after the outage", timeout=30)
    print(f"[{node.runtime.name}] statuses caught up {time.monotonic() - caught_up:.1f}s "
          "after the apiserver came back")
    lease = node.get("lease", "-n", "kube-node-lease", node.name)["spec"]["renewTime"]
    wait(lambda: node.get("lease", "-n", "kube-node-lease", node.name)["spec"]["renewTime"]
         != lease, "lease renewed after the outage", timeout=LEASE_RENEW + 5)
    assert _fingerprint(node.pod("steady")) == before


def _kill_and_restart_the_kubelet(node: Node) -> tuple[tuple[str, int, str, str], str]:
    """Steps 1 and 2; (the steady pod's fingerprint, its container ID)."""
    node.create_pod("steady", [{"name": "steady", "image": BUSYBOX,
                                "command": ["sh", "-c", "sleep 3600"]}])
    wait(lambda: (p := node.pod("steady")) and p["status"].get("phase") == "Running",
         "steady Running", timeout=60)
    before = _fingerprint(node.pod("steady"))
    steady_id = before[0].split("://", 1)[1]

    # 1. kubelet-py is killed: the node goes NotReady within the grace period. (First:
    # after an API server restart the controller manager's lease informer lags behind
    # for a while, which would delay its verdict for reasons that are not ours.)
    lease = node.get("lease", "-n", "kube-node-lease", node.name)["spec"]["renewTime"]
    wait(lambda: node.get("lease", "-n", "kube-node-lease", node.name)["spec"]["renewTime"]
         != lease, "a fresh lease renewal", timeout=LEASE_RENEW + 5)
    renewed = time.monotonic()
    node.kubelet.proc.kill()
    node.kubelet.proc.wait()
    wait(lambda: not _ready(node.get("node", node.name)), "node not Ready",
         timeout=NODE_MONITOR_GRACE + NODE_MONITOR_PERIOD + 15)
    took = time.monotonic() - renewed
    conds = {c["type"]: c for c in node.get("node", node.name)["status"]["conditions"]}
    # the verdict's own timing, from the server's timestamps: the lease's last renewal (the
    # kubelet is dead: it stays) to the Ready condition's transition; our polling of both
    # (which a loaded machine slows) is not in it
    last = node.get("lease", "-n", "kube-node-lease", node.name)["spec"]["renewTime"]
    verdict = (datetime.fromisoformat(conds["Ready"]["lastTransitionTime"])
               - datetime.fromisoformat(last)).total_seconds()
    print(f"\n[{node.runtime.name}] node not Ready {verdict:.1f}s after the last lease renewal "
          f"(server times; {took:.1f}s as the test saw it)")
    assert verdict <= NODE_MONITOR_GRACE + NODE_MONITOR_PERIOD + 5
    assert conds["Ready"]["status"] == "Unknown"
    assert conds["Ready"]["reason"] == "NodeStatusUnknown"
    assert steady_id in _running_ids(node)  # the runtime keeps the pods

    # 2. Restarted, it adopts the running pods as they are.
    node.restart()
    wait(lambda: _ready(node.get("node", node.name)), "node Ready after restart", timeout=30)
    time.sleep(3)
    assert _fingerprint(node.pod("steady")) == before
    return before, steady_id


@pytest.fixture(scope="module")
def outcomes(control_plane: ControlPlane, containerd: Containerd,  # noqa: F811
             engined: Runtime, tmp_path_factory: pytest.TempPathFactory,  # noqa: F811
             ) -> Iterator[dict[str, BaseException | None]]:
    """Run the scenario on a node per runtime at once; what went wrong on each, if anything."""
    runtimes = {"containerd": Runtime("containerd", containerd.endpoint, containerd.subnet),
                "engined": engined}
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(joined_node(control_plane, runtimes[name],
                                                 tmp_path_factory.mktemp("kubelet")))
                 for name in RUNTIMES]
        outage = SharedOutage(control_plane, parties=len(nodes))
        errors: dict[str, BaseException | None] = dict.fromkeys(RUNTIMES)

        def run(n: Node) -> None:
            try:
                scenario(n, outage)
            except BaseException as exc:  # reported by that runtime's test
                errors[n.runtime.name] = exc

        threads = [threading.Thread(target=run, args=(n,), name=f"outage-{n.runtime.name}")
                   for n in nodes]
        for thread in threads:
            thread.start()
        try:
            outage.conduct()
        finally:
            for thread in threads:
                thread.join()
        yield errors


@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_outages_leave_running_pods_alone(outcomes: dict[str, BaseException | None],
                                          runtime_name: str) -> None:
    error = outcomes[runtime_name]
    if error is not None:
        raise error
