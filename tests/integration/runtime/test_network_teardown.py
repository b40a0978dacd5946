"""CNI DEL is called once per attachment: StopPodSandbox releases the network and
RemovePodSandbox does not release it again; a sandbox removed while ready is released once;
a run() that fails after the network was set up releases it. CNI ADD runs beside the
monitor's spawn (engine.runtime.netns): in a namespace that is there, its failure surfaces,
and a failure elsewhere waits for it before the DEL."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from engine.errors import Unavailable
from engine.networkdriver.base import PodNetworkRequest, PodNetworkResult
from engine.runtime.api import Runtime
from engine.runtime.context import RuntimeOptions
from engine.runtime.sandbox import mounts_under
from engine.sys.linux import CLONE_NEWIPC, CLONE_NEWNET, setns
from tests.integration.runtime.fixtures import runtime_env, sandbox_config

pytestmark = pytest.mark.integration
__all__ = ["runtime_env"]


class Recording:
    """A network driver that hands out one address and records every call."""

    def __init__(self) -> None:
        self.setups: list[str] = []
        self.teardowns: list[str] = []

    def ready(self) -> tuple[bool, str]:
        return True, ""

    def set_pod_cidr(self, cidr: str) -> None:
        pass

    def setup(self, request: PodNetworkRequest) -> PodNetworkResult:
        self.setups.append(request.sandbox_id)
        return PodNetworkResult(ips=("10.99.0.2",), result={})

    def check(self, request: PodNetworkRequest) -> None:
        pass

    def teardown(self, request: PodNetworkRequest) -> None:
        self.teardowns.append(request.sandbox_id)


def _runtime(env: tuple[RuntimeOptions, list[Runtime]], net: Recording) -> Runtime:
    rt = Runtime(env[0], network=net)  # type: ignore[arg-type]
    env[1].append(rt)
    return rt


def test_stop_then_remove_releases_the_network_once(
        runtime_env: tuple[RuntimeOptions, list[Runtime]]) -> None:
    net = Recording()
    rt = _runtime(runtime_env, net)
    sid = rt.run_sandbox(sandbox_config("native"))
    rt.stop_sandbox(sid)
    rt.stop_sandbox(sid)  # idempotent, and still no second DEL
    rt.remove_sandbox(sid)
    assert net.setups == [sid]
    assert net.teardowns == [sid]


def test_remove_of_a_ready_sandbox_releases_the_network_once(
        runtime_env: tuple[RuntimeOptions, list[Runtime]]) -> None:
    net = Recording()
    rt = _runtime(runtime_env, net)
    sid = rt.run_sandbox(sandbox_config("native"))
    rt.remove_sandbox(sid)
    assert net.teardowns == [sid]


def test_a_failed_run_releases_what_it_set_up(
        runtime_env: tuple[RuntimeOptions, list[Runtime]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    net = Recording()
    rt = _runtime(runtime_env, net)

    def broken(*_: object, **__: object) -> None:
        raise Unavailable("disk full")

    monkeypatch.setattr("engine.runtime.sandbox.files.write_sandbox_files", broken)
    with pytest.raises(Unavailable):
        rt.run_sandbox(sandbox_config("native"))
    assert len(net.setups) == 1
    assert net.teardowns == net.setups
    assert rt.list_sandboxes() == []


class Slow(Recording):
    """ADD takes a while (it runs beside the monitor's spawn) and may fail; every call is
    logged in order, with whether the pod's network namespace was there for it."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.log: list[str] = []
        self.netns_ok: list[bool] = []

    def setup(self, request: PodNetworkRequest) -> PodNetworkResult:
        self.netns_ok.append(_is_netns(request.netns_path))
        self.log.append("add-begin")
        time.sleep(0.05)
        self.log.append("add-end")
        if self.fail:
            raise Unavailable("no address left")
        return super().setup(request)

    def teardown(self, request: PodNetworkRequest) -> None:
        self.log.append("del")
        super().teardown(request)


def _is_netns(path: str) -> bool:
    """A network namespace (nsfs) other than ours is pinned at `path`."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_ino != os.stat("/proc/self/ns/net").st_ino and \
        st.st_dev == os.stat("/proc/self/ns/net").st_dev


def _nothing_left(rt: Runtime) -> None:
    assert rt.list_sandboxes() == []
    assert list(rt.ctx.store.root.iterdir()) == []
    assert mounts_under(rt.ctx.options.run_root) == []


def test_add_runs_in_the_ready_namespace_and_its_failure_surfaces(
        runtime_env: tuple[RuntimeOptions, list[Runtime]]) -> None:
    net = Slow(fail=True)
    rt = _runtime(runtime_env, net)
    with pytest.raises(Unavailable, match="no address left"):
        rt.run_sandbox(sandbox_config("native", share_pid=True))
    assert net.netns_ok == [True]  # the daemon made it before ADD began
    assert net.log == ["add-begin", "add-end", "del"]
    _nothing_left(rt)


@pytest.mark.parametrize("step", ["engine.runtime.sandbox._make_namespaces",
                                  "engine.shim.spawner.MonitorSpawner.spawn"])
def test_a_failed_monitor_waits_for_add_then_deletes(
        runtime_env: tuple[RuntimeOptions, list[Runtime]],
        monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    net = Slow()
    rt = _runtime(runtime_env, net)

    def broken(*_: object, **__: object) -> None:
        raise Unavailable("monitor gone")

    monkeypatch.setattr(step, broken)
    with pytest.raises(Unavailable, match="monitor gone"):
        rt.run_sandbox(sandbox_config("native"))
    assert net.log == ["add-begin", "add-end", "del"]  # never a DEL before the ADD ended
    _nothing_left(rt)


def test_pod_namespaces_with_the_daemons_network_namespace(
        runtime_env: tuple[RuntimeOptions, list[Runtime]]) -> None:
    """The monitor joins the daemon-made network namespace: the shared PID namespace's
    holder lives in it, and the pod's non-network sysctls still apply (IPC)."""
    rt = _runtime(runtime_env, Recording())
    sid = rt.run_sandbox(sandbox_config("native", share_pid=True,
                                        sysctls={"kernel.shmmni": "1234",
                                                 "net.ipv4.ip_forward": "1"}))
    ns = rt.ctx.store.sandbox_dir(sid) / "ns"
    holder = next(pid for pid in rt.ctx.cgroups.procs(
        rt.ctx.store.load_sandbox(sid).cgroup_path))
    assert os.stat(f"/proc/{holder}/ns/net").st_ino == os.stat(ns / "net").st_ino
    assert os.stat(f"/proc/{holder}/ns/ipc").st_ino == os.stat(ns / "ipc").st_ino
    assert _read_in(ns / "net", "/proc/sys/net/ipv4/ip_forward") == "1"
    assert _read_in(ns / "ipc", "/proc/sys/kernel/shmmni", nstype=CLONE_NEWIPC) == "1234"
    rt.remove_sandbox(sid)
    _nothing_left(rt)


def _read_in(ns: Path, path: str, *, nstype: int = CLONE_NEWNET) -> str:
    """`path` read by a thread of ours that joined namespace `ns`."""
    out: list[str] = []

    def run() -> None:
        fd = os.open(ns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(fd, nstype)  # this thread only; it ends right after
        finally:
            os.close(fd)
        with open(path) as f:
            out.append(f.read().strip())

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return out[0]
