from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from kubelet_py.pods.model import PodRuntime, RuntimeContainer, RuntimeSandbox, State
from kubelet_py.pods.probes import ProbeManager, ProbeSpec, Tally, run_probe
from kubelet_py.pods.status import StatusInputs, compute_pod_status

from .fakes import run_async
from .test_planner import T0, pod

SPEC = ProbeSpec(initial_delay=0, period=0.01, timeout=1, success_threshold=2,
                 failure_threshold=3)


def test_tally_thresholds() -> None:
    t = Tally(SPEC)
    assert not t.record(True) and t.result is None  # one success is not enough
    assert t.record(True) and t.result is True
    assert not t.record(False) and not t.record(False) and t.result is True
    assert t.record(False) and t.result is False
    assert not t.record(True) and t.result is False  # needs two again
    assert t.record(True) and t.result is True


class Runner:
    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.calls: list[list[str]] = []

    async def exec(self, container_id: str, cmd: list[str], timeout: int) -> int:
        self.calls.append(cmd)
        return self.codes.pop(0) if self.codes else 0


@run_async
async def test_exec_tcp_http_probes() -> None:
    runner = Runner([0, 1])
    probe = {"exec": {"command": ["cat", "/tmp/ready"]}}
    assert await run_probe(probe, container_id="c", pod_ip="127.0.0.1", runner=runner,
                           timeout=1)
    assert not await run_probe(probe, container_id="c", pod_ip="127.0.0.1", runner=runner,
                               timeout=1)
    app = web.Application()
    app.router.add_get("/ok", lambda r: web.Response(text="ok"))
    app.router.add_get("/bad", lambda r: web.Response(status=500))
    runner_app = web.AppRunner(app)
    await runner_app.setup()
    site = web.TCPSite(runner_app, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        ok = {"httpGet": {"path": "/ok", "port": port}}
        bad = {"httpGet": {"path": "/bad", "port": port}}
        assert await run_probe(ok, container_id="c", pod_ip="127.0.0.1", runner=runner,
                               timeout=30)
        assert not await run_probe(bad, container_id="c", pod_ip="127.0.0.1", runner=runner,
                                   timeout=30)
        assert await run_probe({"tcpSocket": {"port": port}}, container_id="c",
                               pod_ip="127.0.0.1", runner=runner, timeout=30)
    finally:
        await runner_app.cleanup()
    assert not await run_probe({"tcpSocket": {"port": port}}, container_id="c",
                               pod_ip="127.0.0.1", runner=runner, timeout=30)


def probed_pod(**probes: Any) -> dict[str, Any]:
    p = pod("web")
    for kind, probe in probes.items():
        p["spec"]["containers"][0][kind] = {"periodSeconds": 0.01, "failureThreshold": 2,
                                            **probe}
    return p


RT = PodRuntime(sandboxes=(RuntimeSandbox("sb1", 0, True, T0, ("127.0.0.1",)),),
                containers=(RuntimeContainer("c1", "web", 0, State.RUNNING, "sb1",
                                             created_at=T0, started_at=T0),))


@run_async
async def test_readiness_drives_ready() -> None:
    runner = Runner([1, 1, 0, 0])
    changes: list[int] = []
    killed: list[str] = []

    async def kill(cid: str, reason: str) -> None:
        killed.append(cid)

    mgr = ProbeManager(runner, on_change=lambda: changes.append(1), kill=kill)
    p = probed_pod(readinessProbe={"exec": {"command": ["true"]}})
    mgr.sync(p, RT)
    inputs = StatusInputs("fake", (), ready=mgr.ready, started=mgr.started)
    assert compute_pod_status(p, RT, inputs, T0)["containerStatuses"][0]["ready"] is False
    for _ in range(3000):  # 30 s at most
        await asyncio.sleep(0.01)
        if mgr.ready.get("c1"):
            break
    assert mgr.ready["c1"] and changes and not killed
    status = compute_pod_status(p, RT, inputs, T0)
    assert status["containerStatuses"][0]["ready"] is True
    mgr.sync(p, PodRuntime(RT.sandboxes, ()))  # container gone: its probe stops
    assert not mgr.has("c1", "readinessProbe")


@run_async
async def test_liveness_failure_kills_container() -> None:
    runner = Runner([1, 1, 1])
    killed: list[tuple[str, str]] = []

    async def kill(cid: str, reason: str) -> None:
        killed.append((cid, reason))

    mgr = ProbeManager(runner, on_change=lambda: None, kill=kill)
    mgr.sync(probed_pod(livenessProbe={"exec": {"command": ["false"]}}), RT)
    for _ in range(3000):  # 30 s at most
        await asyncio.sleep(0.01)
        if killed:
            break
    assert killed == [("c1", "livenessProbe failed")]
    mgr.stop()


@run_async
async def test_startup_probe_gates_started_and_liveness() -> None:
    runner = Runner([1, 0])
    mgr = ProbeManager(runner, on_change=lambda: None, kill=_never)
    p = probed_pod(startupProbe={"exec": {"command": ["s"]}},
                   livenessProbe={"exec": {"command": ["l"]}})
    mgr.sync(p, RT)
    inputs = StatusInputs("fake", (), ready=mgr.ready, started=mgr.started)
    cs = compute_pod_status(p, RT, inputs, T0)["containerStatuses"][0]
    assert cs["started"] is False and cs["ready"] is False
    for _ in range(3000):  # 30 s at most
        await asyncio.sleep(0.01)
        if mgr.started.get("c1"):
            break
    assert mgr.started["c1"]
    assert runner.calls[:2] == [["s"], ["s"]]  # liveness waited for the startup probe
    cs = compute_pod_status(p, RT, inputs, T0)["containerStatuses"][0]
    assert cs["started"] is True and cs["ready"] is True
    mgr.stop()


async def _never(cid: str, reason: str) -> None:
    raise AssertionError("must not kill")
