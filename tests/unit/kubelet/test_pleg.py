"""PLEG: a slow safety-net relist while the event stream is healthy, 1 s relists without it."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from cri.api import runtime_pb2 as pb
from kubelet_py.cri_client import CRIError
from kubelet_py.pods.pleg import (
    RELIST_PERIOD,
    SLOW_RELIST_PERIOD,
    STREAM_GRACE,
    STREAM_RETRY,
    Pleg,
    changed_uids,
)

from .fakes import run_async


class StepClock:
    """Sleeps block until the test moves time past their deadline."""

    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> dt.datetime:
        return dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.t + seconds, future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its deadline, in order."""
        target = self.t + seconds
        await settle()
        while True:
            self._sleepers = [(d, f) for d, f in self._sleepers if not f.done()]
            due = sorted(((d, f) for d, f in self._sleepers if d <= target),
                         key=lambda item: item[0])
            if not due:
                break
            deadline, future = due[0]
            self.t = max(self.t, deadline)
            future.set_result(None)
            self._sleepers = [(d, f) for d, f in self._sleepers if f is not future]
            await settle()
        self.t = target
        await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def event(uid: str) -> pb.ContainerEventResponse:
    return pb.ContainerEventResponse(pod_sandbox_status=pb.PodSandboxStatus(
        metadata=pb.PodSandboxMetadata(uid=uid)))


class FakeRuntime:
    """A runtime whose event streams the test opens, feeds and breaks."""

    def __init__(self, *, unimplemented: bool = False) -> None:
        self.state: dict[str, str] = {}
        self.snapshots = 0
        self.streams = 0
        self.unimplemented = unimplemented
        self.down = False
        self._queue: asyncio.Queue[pb.ContainerEventResponse | Exception] = asyncio.Queue()

    async def snapshot(self) -> dict[str, str]:
        self.snapshots += 1
        return dict(self.state)

    async def events(self) -> AsyncIterator[pb.ContainerEventResponse]:
        self.streams += 1
        if self.unimplemented:
            raise CRIError("GetContainerEvents", grpc.StatusCode.UNIMPLEMENTED, "no")
        if self.down:
            raise CRIError("GetContainerEvents", grpc.StatusCode.UNAVAILABLE, "refused")
        while True:
            item = await self._queue.get()
            if isinstance(item, Exception):
                raise item
            yield item

    def send(self, item: pb.ContainerEventResponse | Exception) -> None:
        self._queue.put_nowait(item)


async def running(runtime: FakeRuntime, clock: StepClock, notified: list[str],
                  body: Callable[[Pleg], Awaitable[None]]) -> None:
    pleg = Pleg(runtime, notified.append, clock=clock)
    task = asyncio.create_task(pleg.run())
    try:
        await settle()
        await body(pleg)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def relists_during(runtime: FakeRuntime, clock: StepClock, seconds: float) -> int:
    before = runtime.snapshots
    await clock.advance(seconds)
    return runtime.snapshots - before


def broken() -> CRIError:
    return CRIError("GetContainerEvents", grpc.StatusCode.UNAVAILABLE, "connection reset")


@run_async
async def test_healthy_stream_slows_the_relist_to_the_safety_net() -> None:
    runtime, clock, notified = FakeRuntime(), StepClock(), []

    async def body(pleg: Pleg) -> None:
        assert runtime.snapshots == 1  # the first relist runs at once
        await clock.advance(STREAM_GRACE + RELIST_PERIOD)  # grace, then one relist after it
        assert pleg.stream_healthy
        assert pleg.relist_period() == SLOW_RELIST_PERIOD
        count = runtime.snapshots
        assert await relists_during(runtime, clock, SLOW_RELIST_PERIOD - 10) == 0
        assert await relists_during(runtime, clock, 10) == 1
        assert runtime.snapshots == count + 1
        runtime.send(event("pod-a"))  # events still wake the pod's worker at once
        await settle()
        assert notified == ["pod-a"] and pleg.events == 1

    await running(runtime, clock, notified, body)


@run_async
async def test_relist_still_notices_changes_while_slow() -> None:
    runtime, clock, notified = FakeRuntime(), StepClock(), []

    async def body(pleg: Pleg) -> None:
        await clock.advance(STREAM_GRACE + RELIST_PERIOD)
        runtime.state = {"c/1": "pod-b CONTAINER_EXITED"}  # a change the stream missed
        await clock.advance(SLOW_RELIST_PERIOD)
        assert notified == ["pod-b"]

    await running(runtime, clock, notified, body)


@run_async
async def test_stream_error_relists_at_once_then_every_second() -> None:
    runtime, clock, notified = FakeRuntime(), StepClock(), []

    async def body(pleg: Pleg) -> None:
        await clock.advance(STREAM_GRACE + RELIST_PERIOD)
        assert pleg.relist_period() == SLOW_RELIST_PERIOD
        runtime.down = True
        count = runtime.snapshots
        runtime.send(broken())
        await settle()
        assert runtime.snapshots == count + 1  # no time passed: the break itself relisted
        assert not pleg.stream_healthy
        assert pleg.relist_period() == RELIST_PERIOD
        assert await relists_during(runtime, clock, 10 * RELIST_PERIOD) == 10
        assert runtime.streams > 1  # the stream is retried meanwhile

    await running(runtime, clock, notified, body)


@run_async
async def test_recovered_stream_slows_the_relist_again() -> None:
    runtime, clock, notified = FakeRuntime(), StepClock(), []

    async def body(pleg: Pleg) -> None:
        await clock.advance(STREAM_GRACE + RELIST_PERIOD)
        runtime.down = True
        runtime.send(broken())
        await clock.advance(2 * STREAM_RETRY)
        assert pleg.relist_period() == RELIST_PERIOD
        runtime.down = False  # the runtime is back: the next retry opens a stream
        await clock.advance(STREAM_RETRY + STREAM_GRACE + RELIST_PERIOD)
        assert pleg.stream_healthy
        assert pleg.relist_period() == SLOW_RELIST_PERIOD
        assert await relists_during(runtime, clock, SLOW_RELIST_PERIOD - 10) == 0

    await running(runtime, clock, notified, body)


@run_async
async def test_an_event_confirms_the_stream_before_the_grace_period() -> None:
    runtime, clock, notified = FakeRuntime(), StepClock(), []

    async def body(pleg: Pleg) -> None:
        assert not pleg.stream_healthy
        runtime.send(event("pod-c"))
        await settle()
        assert pleg.stream_healthy
        await clock.advance(RELIST_PERIOD)  # one relist after the stream opened: slow
        assert pleg.relist_period() == SLOW_RELIST_PERIOD

    await running(runtime, clock, notified, body)


@run_async
async def test_runtime_without_events_relists_every_second() -> None:
    runtime, clock, notified = FakeRuntime(unimplemented=True), StepClock(), []

    async def body(pleg: Pleg) -> None:
        assert pleg.events_supported is False
        assert await relists_during(runtime, clock, 30 * RELIST_PERIOD) == 30
        assert runtime.streams == 1  # not retried: the runtime does not have the RPC

    await running(runtime, clock, notified, body)


def test_changed_uids() -> None:
    before = {"s/1": "a SANDBOX_READY", "c/1": "a CONTAINER_RUNNING", "c/2": "b RUNNING"}
    after = {"s/1": "a SANDBOX_READY", "c/1": "a CONTAINER_EXITED", "c/3": "c CREATED"}
    assert changed_uids(before, after) == {"a", "b", "c"}
    assert changed_uids(after, after) == set()
