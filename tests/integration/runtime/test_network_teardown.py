"""CNI DEL is called once per attachment: StopPodSandbox releases the network and
RemovePodSandbox does not release it again; a sandbox removed while ready is released once;
a run() that fails after the network was set up releases it."""
from __future__ import annotations

import pytest

from engine.errors import Unavailable
from engine.networkdriver.base import PodNetworkRequest, PodNetworkResult
from engine.runtime.api import Runtime
from engine.runtime.context import RuntimeOptions
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
