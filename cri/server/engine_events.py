"""Container lifecycle events from the engine, for GetContainerEvents.

The CRI verbs publish created/started/stopped/deleted as they succeed; a watcher thread
polls the runtime for containers that exited on their own (the process ended, OOM) and
publishes those as stopped. Each event carries the sandbox's status and the statuses of
all its containers, as the kubelet's evented PLEG expects.

The statuses come from the same container view the RPCs read, current at the moment of
the event; the scan costs nothing while the runtime's generation (which grows with any
change to any container) stays the same.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cri.api import runtime_pb2 as pb
from cri.server.container_view import ContainerView
from cri.server.engine_runtime import sandbox_status
from cri.server.events import EventBus
from engine.errors import EngineError, NotFound
from engine.runtime.api import Runtime

log = logging.getLogger(__name__)


class EnginePublisher:
    def __init__(self, bus: EventBus, runtime: Runtime, *, view: ContainerView,
                 clock_ns: Callable[[], int] = time.time_ns, poll_s: float = 1.0) -> None:
        self._bus, self._rt, self._view = bus, runtime, view
        self._scanned_at: int | None = None  # the runtime generation of the last scan
        self._clock_ns = clock_ns
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._exited: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, container_id: str, sandbox_id: str, kind: int) -> None:
        with self._lock:
            if kind == pb.CONTAINER_STOPPED_EVENT:
                if container_id in self._exited:
                    return  # already reported
                self._exited.add(container_id)
            elif kind == pb.CONTAINER_DELETED_EVENT:
                self._exited.discard(container_id)
        if not self._bus.subscriber_count():
            return  # nobody listens: no statuses to read for an event nobody gets
        event = pb.ContainerEventResponse(container_id=container_id,
                                          container_event_type=kind,  # type: ignore[arg-type]
                                          created_at=self._clock_ns())
        try:
            event.pod_sandbox_status.CopyFrom(sandbox_status(self._rt.sandbox_status(sandbox_id)))
            event.containers_statuses.extend(e.status for e in self._view.entries(sandbox_id))
        except NotFound:
            pass  # the sandbox went away meanwhile: the bare event still tells the story
        self._bus.publish(event)

    def scan(self) -> None:
        """Publish `stopped` for containers that exited since the last scan."""
        gen = self._rt.generation()
        if gen == self._scanned_at:
            return
        for e in self._view.entries():
            if e.status.state == pb.CONTAINER_EXITED and e.status.id not in self._exited:
                self.publish(e.status.id, e.sandbox_id, pb.CONTAINER_STOPPED_EVENT)
        self._scanned_at = gen

    def start(self) -> None:
        with self._lock:
            self._exited = {e.status.id for e in self._view.entries()
                            if e.status.state == pb.CONTAINER_EXITED}
        self._thread = threading.Thread(target=self._watch, name="cri-exit-watcher",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._poll_s + 5)

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.scan()
            except EngineError as exc:
                log.warning("container exit watcher: %s", exc)
            except Exception:
                log.exception("container exit watcher failed; continuing")
