"""GetContainerEvents: a server stream fed by an event bus, one queue per client.

`EventBus` is the in-process fan-out the engine adapter publishes into. A subscriber that
falls `max_backlog` events behind is cut off (its stream ends with RESOURCE_EXHAUSTED)
rather than letting memory grow without bound; the kubelet then relists, as it must after
any stream error. A client that goes away is noticed within `poll_s` and its queue freed.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Iterator

import grpc

from cri.api import runtime_pb2 as pb
from cri.server.dispatch import Impl
from cri.server.ports import EventPort, EventSubscription
from engine.errors import ResourceExhausted


class _Subscription:
    def __init__(self, bus: EventBus, max_backlog: int) -> None:
        self._bus = bus
        self._max = max_backlog
        self._queue: collections.deque[pb.ContainerEventResponse] = collections.deque()
        self._cond = threading.Condition()
        self._overflowed = False
        self._closed = False

    def _offer(self, event: pb.ContainerEventResponse) -> None:
        with self._cond:
            if self._closed or self._overflowed:
                return
            if len(self._queue) >= self._max:
                self._overflowed = True
                self._queue.clear()
            else:
                self._queue.append(event)
            self._cond.notify_all()

    def get(self, timeout: float) -> pb.ContainerEventResponse | None:
        with self._cond:
            if not self._queue and not self._overflowed and not self._closed:
                self._cond.wait(timeout)
            if self._overflowed:
                raise ResourceExhausted(
                    f"event subscriber fell more than {self._max} events behind")
            return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        self._bus._drop(self)


class EventBus:
    """Thread-safe publish/subscribe of container events (implements EventPort)."""

    def __init__(self, *, max_backlog: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[_Subscription] = []
        self._max_backlog = max_backlog

    def subscribe(self) -> EventSubscription:
        sub = _Subscription(self, self._max_backlog)
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def publish(self, event: pb.ContainerEventResponse) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub._offer(event)

    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def _drop(self, sub: _Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)


class Events:
    def __init__(self, port: EventPort, *, poll_s: float = 0.5) -> None:
        self._port = port
        self._poll_s = poll_s

    def rpcs(self) -> dict[str, Impl]:
        return {"GetContainerEvents": self.GetContainerEvents}

    def GetContainerEvents(self, request: pb.GetEventsRequest,
                           context: grpc.ServicerContext
                           ) -> Iterator[pb.ContainerEventResponse]:
        subscription = self._port.subscribe()
        context.add_callback(subscription.close)  # runs when the RPC ends, however it ends
        try:
            while context.is_active():
                event = subscription.get(self._poll_s)
                if event is not None:
                    yield event
        finally:
            subscription.close()
