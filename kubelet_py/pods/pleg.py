"""PLEG: notice container and sandbox changes and wake the pod's worker.

The runtime's GetContainerEvents stream wakes workers at once where it exists; a relist of
sandboxes and containers every second catches everything else (and runtimes without it).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kubelet_py.clock import Clock
from kubelet_py.cri_client import CRIClient, CRIError
from kubelet_py.cri_client.events import container_events, is_unimplemented
from kubelet_py.pods.runtime_view import snapshot

log = logging.getLogger(__name__)
RELIST_PERIOD = 1.0
STREAM_RETRY = 5.0


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
    def __init__(self, cri: CRIClient, notify: Callable[[str], None], *, clock: Clock,
                 period: float = RELIST_PERIOD) -> None:
        self._cri = cri
        self._notify = notify
        self._clock = clock
        self._period = period
        self.events_supported: bool | None = None
        self.relists = 0
        self.events = 0

    async def relist_once(self, before: dict[str, str]) -> dict[str, str]:
        after = await snapshot(self._cri)
        self.relists += 1
        for uid in changed_uids(before, after):
            self._notify(uid)
        return after

    async def relist_loop(self) -> None:
        state: dict[str, str] = {}
        while True:
            try:
                state = await self.relist_once(state)
            except CRIError as exc:
                log.warning("PLEG relist failed: %s", exc)
            await self._clock.sleep(self._period)

    async def events_loop(self) -> None:
        while True:
            try:
                async for event in container_events(self._cri.conn):
                    self.events_supported = True
                    self.events += 1
                    uid = event.pod_sandbox_status.metadata.uid
                    if uid:
                        self._notify(uid)
            except CRIError as exc:
                if is_unimplemented(exc):
                    log.info("runtime has no GetContainerEvents; relisting only")
                    self.events_supported = False
                    return
                log.debug("container event stream ended: %s", exc)
            await self._clock.sleep(STREAM_RETRY)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.relist_loop(), name="pleg-relist")
            tg.create_task(self.events_loop(), name="pleg-events")
