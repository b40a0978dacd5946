"""PLEG: notice container and sandbox changes and wake the pod's worker.

Two sources, as upstream's evented PLEG combines them:
- the runtime's GetContainerEvents stream wakes a pod's worker as soon as something happens;
- a relist of sandboxes and containers compares the runtime with the last relist and wakes
  the workers of pods whose state changed.

While the stream is healthy the relist is only a safety net and runs every 300 s
(upstream's evented-PLEG relist period). When the stream breaks (or the runtime has none),
the PLEG relists at once and then every second, as upstream's generic PLEG does, and keeps
retrying the stream every 5 s; once a stream is healthy again, and one relist has run since
it opened (so nothing that happened in between is missed), the relist slows down again.

"Healthy": the stream delivered an event, or has stayed open for `STREAM_GRACE` seconds
without an error. Runtimes send nothing on the stream until the first event (not even
headers), while a runtime without the RPC, or one that is down, fails the call at once.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from cri.api import runtime_pb2 as pb
from kubelet_py.clock import Clock
from kubelet_py.cri_client import CRIClient, CRIError
from kubelet_py.cri_client.events import container_events, is_unimplemented
from kubelet_py.pods.runtime_view import snapshot

log = logging.getLogger(__name__)
RELIST_PERIOD = 1.0
"""Relist period without a healthy event stream (upstream's generic PLEG)."""
SLOW_RELIST_PERIOD = 300.0
"""Relist period while the event stream is healthy (upstream's evented PLEG)."""
STREAM_RETRY = 5.0
STREAM_GRACE = 2.0


class PlegRuntime(Protocol):
    async def snapshot(self) -> dict[str, str]:
        """`<kind>/<id>` -> `<pod uid> <state>` of every sandbox and container."""
        ...

    def events(self) -> AsyncIterator[pb.ContainerEventResponse]:
        """The container event stream; raises CRIError when it fails or is unsupported."""
        ...


class CRIPlegRuntime:
    """The PLEG's view of a CRI runtime."""

    def __init__(self, cri: CRIClient) -> None:
        self._cri = cri

    async def snapshot(self) -> dict[str, str]:
        return await snapshot(self._cri)

    def events(self) -> AsyncIterator[pb.ContainerEventResponse]:
        return container_events(self._cri.conn)


def changed_uids(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """Pod UIDs whose sandboxes or containers appeared, vanished or changed state."""
    uids = set()
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old != new:
            uids.add((new or old or "").split(" ", 1)[0])
    uids.discard("")
    return uids


class Pleg:
    def __init__(self, runtime: PlegRuntime, notify: Callable[[str], None], *, clock: Clock,
                 period: float = RELIST_PERIOD,
                 slow_period: float = SLOW_RELIST_PERIOD) -> None:
        self._runtime = runtime
        self._notify = notify
        self._clock = clock
        self._period = period
        self._slow_period = slow_period
        self._wake = asyncio.Event()
        self._stream_opened: float | None = None
        """When the current event stream was opened (monotonic); None: no stream."""
        self._stream_confirmed = False
        """The current stream delivered an event."""
        self._last_relist: float | None = None
        self._slow = False
        self.events_supported: bool | None = None
        self.relists = 0
        self.events = 0

    # -- health ---------------------------------------------------------------------------

    @property
    def stream_healthy(self) -> bool:
        opened = self._stream_opened
        if opened is None:
            return False
        return self._stream_confirmed or self._clock.monotonic() - opened >= STREAM_GRACE

    def relist_period(self) -> float:
        """Slow while the stream is healthy and a relist has run since it opened."""
        opened = self._stream_opened
        slow = self.stream_healthy and opened is not None and \
            self._last_relist is not None and self._last_relist >= opened
        if slow != self._slow:
            self._slow = slow
            log.info("container event stream %s: relisting every %gs",
                     "healthy" if slow else "not available", self._relist_for(slow))
        return self._relist_for(slow)

    def _relist_for(self, slow: bool) -> float:
        return self._slow_period if slow else self._period

    def _stream_down(self) -> None:
        was_healthy = self.stream_healthy
        self._stream_opened = None
        self._stream_confirmed = False
        if was_healthy:
            self._wake.set()  # relist now: events may have been lost with the stream

    # -- the loops ------------------------------------------------------------------------

    async def relist_once(self, before: dict[str, str]) -> dict[str, str]:
        self._last_relist = self._clock.monotonic()
        after = await self._runtime.snapshot()
        self.relists += 1
        for uid in changed_uids(before, after):
            self._notify(uid)
        return after

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the event stream breaks meanwhile."""
        if self._wake.is_set():
            self._wake.clear()
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeper, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            woken.cancel()
        self._wake.clear()

    async def relist_loop(self) -> None:
        state: dict[str, str] = {}
        while True:
            try:
                state = await self.relist_once(state)
            except CRIError as exc:
                log.warning("PLEG relist failed: %s", exc)
            await self._pause(self.relist_period())

    async def events_loop(self) -> None:
        while True:
            self._stream_opened = self._clock.monotonic()
            self._stream_confirmed = False
            try:
                async for event in self._runtime.events():
                    self.events_supported = True
                    self._stream_confirmed = True
                    self.events += 1
                    uid = event.pod_sandbox_status.metadata.uid
                    if uid:
                        self._notify(uid)
                log.debug("container event stream ended")
            except CRIError as exc:
                if is_unimplemented(exc):
                    log.info("runtime has no GetContainerEvents; relisting only")
                    self.events_supported = False
                    self._stream_down()
                    return
                log.debug("container event stream failed: %s", exc)
            self._stream_down()
            await self._clock.sleep(STREAM_RETRY)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.relist_loop(), name="pleg-relist")
            tg.create_task(self.events_loop(), name="pleg-events")
