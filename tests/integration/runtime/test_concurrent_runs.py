"""RunPodSandbox calls run side by side (only the name check and the reservation are
serialized), and a name is still taken once."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.errors import FailedPrecondition
from engine.networkdriver.base import PodNetworkRequest, PodNetworkResult
from engine.runtime.api import Runtime
from engine.runtime.context import RuntimeOptions
from engine.runtime.spec import SandboxConfig
from engine.runtime.status import SandboxStatus
from tests.integration.runtime.fixtures import runtime_env, sandbox_config
from tests.integration.runtime.test_network_teardown import Recording

pytestmark = pytest.mark.integration
__all__ = ["runtime_env"]


class Meeting(Recording):
    """ADD returns only once two ADDs are under way at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = threading.Barrier(2, timeout=60)

    def setup(self, request: PodNetworkRequest) -> PodNetworkResult:
        self.barrier.wait()  # BrokenBarrierError if the other run could not get here
        return super().setup(request)


def test_two_runs_overlap(runtime_env: tuple[RuntimeOptions, list[Runtime]]) -> None:
    net = Meeting()
    rt = Runtime(runtime_env[0], network=net)  # type: ignore[arg-type]
    runtime_env[1].append(rt)
    with ThreadPoolExecutor(2) as pool:
        sids = list(pool.map(rt.run_sandbox, [sandbox_config(), sandbox_config()]))
    assert sorted(net.setups) == sorted(sids)
    assert all(rt.sandbox_status(s).status is SandboxStatus.READY for s in sids)


def test_a_name_is_taken_once(runtime_env: tuple[RuntimeOptions, list[Runtime]]) -> None:
    rt = Runtime(runtime_env[0])
    runtime_env[1].append(rt)
    config: SandboxConfig = sandbox_config()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(rt.run_sandbox, config) for _ in range(4)]
    done = [f for f in futures if f.exception() is None]
    assert len(done) == 1
    assert all(isinstance(f.exception(), FailedPrecondition) for f in futures if f not in done)
    assert [i.record.id for i in rt.list_sandboxes()] == [done[0].result()]
