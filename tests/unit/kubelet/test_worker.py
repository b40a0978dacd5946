from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from kubelet_py.pods.executor import SandboxError, Started, StartError
from kubelet_py.pods.model import (
    PodRuntime,
    RuntimeContainer,
    RuntimeSandbox,
    State,
    container_hash,
)
from kubelet_py.pods.worker import BACKOFF_REPORT, PodWorker, grace_seconds

from .fakes import ManualClock, run_async
from .test_planner import pod


class FakeRuntime:
    """An executor double that changes a PodRuntime the way a runtime would."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.state = PodRuntime()
        self.calls: list[str] = []
        self.fail_start: dict[str, StartError] = {}
        self.fail_sandbox = 0
        self.kill_graces: list[int] = []
        self.warnings: tuple[str, ...] = ()

    async def view(self, uid: str) -> PodRuntime:
        return self.state

    async def create_sandbox(self, pod: Any, attempt: int, *, runtime_handler: str = "") -> str:
        self.calls.append(f"sandbox/{attempt}")
        if self.fail_sandbox:
            self.fail_sandbox -= 1
            raise SandboxError("Failed to create pod sandbox: boom")
        sb = RuntimeSandbox(id=f"sb{attempt}", attempt=attempt, ready=True,
                            created_at=self.clock.now(), ips=("10.0.0.9",))
        self.state = PodRuntime((*self.state.sandboxes, sb), self.state.containers)
        return sb.id

    async def sandbox_ips(self, sandbox_id: str) -> tuple[str, ...]:
        self.calls.append(f"ips/{sandbox_id}")
        return next(s.ips for s in self.state.sandboxes if s.id == sandbox_id)

    async def start_container(self, pod: Any, spec: Any, *, sandbox_id: str,
                              sandbox_attempt: int, attempt: int,
                              pod_ips: tuple[str, ...]) -> Started:
        self.calls.append(f"start/{spec['name']}/{attempt}")
        if spec["name"] in self.fail_start:
            raise self.fail_start[spec["name"]]
        c = RuntimeContainer(id=f"{spec['name']}-{attempt}", name=spec["name"], attempt=attempt,
                             state=State.RUNNING, sandbox_id=sandbox_id,
                             created_at=self.clock.now(), started_at=self.clock.now(),
                             hash=container_hash(spec))
        self.state = PodRuntime(self.state.sandboxes, (*self.state.containers, c))
        return Started(c.id, "sha256:img", warnings=self.warnings)

    async def remove_container(self, container_id: str) -> None:
        self.calls.append(f"rm/{container_id}")

    async def stop_container(self, container_id: str, *, grace: int) -> None:
        self.calls.append(f"stop/{container_id}")
        self.kill_graces.append(grace)
        self.state = PodRuntime(self.state.sandboxes, tuple(
            dataclasses.replace(c, state=State.EXITED, exit_code=137,
                                finished_at=self.clock.now())
            if c.id == container_id else c for c in self.state.containers))

    async def kill_pod(self, runtime: PodRuntime, *, grace: int) -> None:
        self.calls.append("kill")
        self.kill_graces.append(grace)
        now = self.clock.now()
        self.state = PodRuntime(
            tuple(RuntimeSandbox(s.id, s.attempt, False, s.created_at, s.ips)
                  for s in self.state.sandboxes),
            tuple(RuntimeContainer(c.id, c.name, c.attempt, State.EXITED, c.sandbox_id,
                                   created_at=c.created_at, started_at=c.started_at,
                                   finished_at=now, exit_code=137)
                  if c.state == State.RUNNING else c for c in self.state.containers))

    async def remove_pod(self, runtime: PodRuntime) -> None:
        self.calls.append("remove")
        self.state = PodRuntime()


class FakeReporter:
    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.finalized: list[str] = []
        self.events: list[str] = []
        self.messages: list[str] = []

    async def report(self, pod: Any, status: dict[str, Any]) -> None:
        self.statuses.append(status)

    async def finalize(self, pod: Any) -> None:
        self.finalized.append(pod["metadata"]["uid"])

    def forget(self, uid: str) -> None:
        pass

    def event(self, pod: Any, *, kind: str, reason: str, message: str) -> None:
        self.events.append(f"{kind}/{reason}")
        self.messages.append(message)


def make(clock: ManualClock) -> tuple[PodWorker, FakeRuntime, FakeReporter]:
    rt, rep = FakeRuntime(clock), FakeReporter()
    worker = PodWorker("u1", executor=rt, view=rt.view, reporter=rep,  # type: ignore[arg-type]
                       clock=clock, runtime_name=lambda: "fake", host_ips=("192.0.2.1",),
                       runtime_handler=_no_handler, cleanup=lambda uid: None)
    return worker, rt, rep


async def _no_handler(pod: Any) -> str:
    return ""


def status_of(rep: FakeReporter) -> dict[str, Any]:
    return rep.statuses[-1]


@run_async
async def test_sync_starts_pod_and_reports_running() -> None:
    clock = ManualClock()
    worker, rt, rep = make(clock)
    p = pod("web", "log")
    finished, requeue = await worker.sync(p)
    assert not finished and requeue is None
    assert rt.calls == ["sandbox/0", "ips/sb0", "start/web/0", "start/log/0"]
    st = status_of(rep)
    assert st["phase"] == "Running" and st["podIP"] == "10.0.0.9"
    assert [c["ready"] for c in st["containerStatuses"]] == [True, True]


@run_async
async def test_start_failure_backs_off_and_reports_reason() -> None:
    clock = ManualClock()
    worker, rt, rep = make(clock)
    rt.fail_start["web"] = StartError("ErrImagePull", "not found")
    _, requeue = await worker.sync(pod("web"))
    assert status_of(rep)["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
    # Synced again soon, to report the back-off while it holds (not only when it ends).
    assert requeue == BACKOFF_REPORT
    assert "Warning/Failed" in rep.events
    clock.advance(3)
    _, requeue = await worker.sync(pod("web"))
    assert status_of(rep)["containerStatuses"][0]["state"]["waiting"]["reason"] == \
        "ImagePullBackOff"
    assert requeue == 7.0
    assert rt.calls.count("start/web/0") == 1
    clock.advance(7)
    del rt.fail_start["web"]
    await worker.sync(pod("web"))
    assert rt.calls.count("start/web/0") == 2
    assert status_of(rep)["phase"] == "Running"
    assert worker.failures == {}


@run_async
async def test_sandbox_failure_backs_off_without_hot_loop() -> None:
    clock = ManualClock()
    worker, rt, rep = make(clock)
    rt.fail_sandbox = 5
    _, requeue = await worker.sync(pod("web"))
    assert requeue == 10.0 and "Warning/FailedCreatePodSandBox" in rep.events
    await worker.sync(pod("web"))  # woken at once (e.g. by the PLEG): still backing off
    assert rt.calls == ["sandbox/0"]
    clock.advance(10)
    _, requeue = await worker.sync(pod("web"))
    assert rt.calls == ["sandbox/0", "sandbox/0"] and requeue == 20.0


@run_async
async def test_graceful_termination_then_final_delete() -> None:
    clock = ManualClock()
    worker, rt, rep = make(clock)
    p = pod("web")
    await worker.sync(p)
    p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    p["metadata"]["deletionGracePeriodSeconds"] = 7
    finished, _ = await worker.sync(p)
    assert finished
    assert rt.kill_graces == [7]
    assert rt.calls[-2:] == ["kill", "remove"]
    assert rep.finalized == ["u1"]
    final = status_of(rep)["containerStatuses"][0]["state"]
    assert final["terminated"]["exitCode"] == 137


@run_async
async def test_done_pod_never_restarts() -> None:
    clock = ManualClock()
    worker, rt, rep = make(clock)
    p = pod("job", policy="OnFailure")
    await worker.sync(p)
    job = rt.state.containers[0]
    rt.state = PodRuntime(rt.state.sandboxes, (RuntimeContainer(
        job.id, job.name, 0, State.EXITED, job.sandbox_id, created_at=job.created_at,
        started_at=job.started_at, finished_at=clock.now(), exit_code=0),))
    await worker.sync(p)
    assert worker.done and status_of(rep)["phase"] == "Succeeded"
    assert rt.calls[-1] == "kill"  # the sandbox is stopped
    calls = len(rt.calls)
    await worker.sync(p)  # sandbox not ready now; OnFailure must still not recreate it
    assert rt.calls[calls:] == []


def test_update_wakes_only_on_spec_changes() -> None:
    clock = ManualClock()
    worker, _, _ = make(clock)
    p = pod("web")
    worker.update(p)
    assert worker._wake.is_set()
    worker._wake.clear()
    worker.update({**p, "status": {"phase": "Running"},
                   "metadata": {**p["metadata"], "resourceVersion": "9"}})
    assert not worker._wake.is_set()
    worker.update({**p, "metadata": {**p["metadata"], "deletionTimestamp": "now"}})
    assert worker._wake.is_set()


def test_grace_seconds() -> None:
    p = pod("a")
    assert grace_seconds(p) == 30
    p["spec"]["terminationGracePeriodSeconds"] = 5
    assert grace_seconds(p) == 5
    p["metadata"]["deletionGracePeriodSeconds"] = 0
    assert grace_seconds(p) == 0
    assert dt.timedelta(seconds=grace_seconds(p)) == dt.timedelta(0)


@run_async
async def test_unexpected_error_keeps_the_worker_alive() -> None:
    import asyncio

    clock = ManualClock()
    worker, rt, rep = make(clock)

    async def broken(pod: Any, *a: Any, **k: Any) -> Started:
        raise KeyError("image")

    rt.start_container = broken  # type: ignore[method-assign]
    worker.update(pod("web"))
    task = asyncio.create_task(worker.run())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()
    assert "Warning/FailedSync" in rep.events
    task.cancel()


@run_async
async def test_changed_image_restarts_the_container_with_a_killing_event() -> None:
    clock = ManualClock()
    worker, rt, rep = make(clock)
    p = pod("web", "log")
    await worker.sync(p)
    clock.advance(30)
    p["spec"]["containers"][0]["image"] = "busybox:1.37"
    await worker.sync(p)
    assert rt.calls[-2:] == ["stop/web-0", "start/web/1"]
    assert "Normal/Killing" in rep.events
    assert "Container web definition changed, will be restarted" in rep.messages
    st = status_of(rep)["containerStatuses"]
    assert st[0]["restartCount"] == 1 and "running" in st[0]["state"]
    assert st[1]["restartCount"] == 0
    calls = len(rt.calls)
    await worker.sync(p)  # the new container carries the new hash: nothing more to do
    assert rt.calls[calls:] == []


@run_async
async def test_config_error_retries_at_a_fixed_pace() -> None:
    clock = ManualClock()
    worker, rt, rep = make(clock)
    rt.fail_start["web"] = StartError("CreateContainerConfigError", 'configmap "cfg" not found')
    for _ in range(4):  # never doubles, unlike image pulls
        _, requeue = await worker.sync(pod("web"))
        assert requeue == 10.0
        waiting = status_of(rep)["containerStatuses"][0]["state"]["waiting"]
        assert waiting == {"reason": "CreateContainerConfigError",
                           "message": 'configmap "cfg" not found'}
        clock.advance(10)
    assert rt.calls.count("start/web/0") == 4
    assert 'Error: configmap "cfg" not found' in rep.messages
    del rt.fail_start["web"]
    await worker.sync(pod("web"))
    assert status_of(rep)["phase"] == "Running" and worker.failures == {}


@run_async
async def test_skipped_env_keys_become_events() -> None:
    clock = ManualClock()
    worker, rt, rep = make(clock)
    rt.warnings = ("Keys [a=b] from the EnvFrom configmap ns/cfg were skipped ...",)
    await worker.sync(pod("web"))
    assert "Warning/InvalidEnvironmentVariableNames" in rep.events
    assert rt.warnings[0] in rep.messages


@run_async
async def test_active_deadline_fails_the_pod_and_stops_it() -> None:
    clock = ManualClock()
    worker, rt, rep = make(clock)
    p = pod("web")
    p["spec"]["activeDeadlineSeconds"] = 30
    _, requeue = await worker.sync(p)
    assert requeue == 30.0  # woken when the deadline passes
    p["status"] = {"startTime": status_of(rep)["startTime"]}
    clock.advance(12)
    _, requeue = await worker.sync(p)
    assert requeue == 18.0
    clock.advance(18)
    await worker.sync(p)
    st = status_of(rep)
    assert (st["phase"], st["reason"]) == ("Failed", "DeadlineExceeded")
    assert st["message"] == "Pod was active on the node longer than the specified deadline"
    assert "Normal/DeadlineExceeded" in rep.events and rt.calls[-1] == "kill"
    assert worker.done
    calls = len(rt.calls)
    await worker.sync(p)
    assert rt.calls[calls:] == [] and status_of(rep)["phase"] == "Failed"


@run_async
async def test_deadline_added_to_a_running_pod() -> None:
    clock = ManualClock()
    worker, rt, rep = make(clock)
    p = pod("web")
    p["status"] = {"startTime": "2025-12-31T23:00:00Z"}  # running for an hour already
    await worker.sync(p)
    assert status_of(rep)["phase"] == "Running"
    p["spec"]["activeDeadlineSeconds"] = 60
    await worker.sync(p)
    assert status_of(rep)["reason"] == "DeadlineExceeded" and rt.calls[-1] == "kill"
