"""EnginePublisher: an exit nobody asked for becomes one `stopped` event; a scan with
nothing changed reads nothing."""
from __future__ import annotations

from typing import Any, cast

from cri.api import runtime_pb2 as pb
from cri.server.engine_events import EnginePublisher
from cri.server.events import EventBus
from engine.runtime.api import SandboxInfo
from engine.runtime.spec import SandboxConfig
from engine.runtime.status import SandboxStatus, Status
from engine.runtime.store import SandboxRecord
from tests.unit.cri.test_container_view import Engine, info, view_of


class Runtime(Engine):
    def sandbox_status(self, sid: str) -> SandboxInfo:
        rec = SandboxRecord(id=sid, config=SandboxConfig(name="p", namespace="n", uid="u"),
                            created_at=1, cgroup_path="", driver="native")
        return SandboxInfo(record=rec, status=SandboxStatus.READY, netns_path="",
                           monitor_alive=True)


def test_an_exit_is_published_once_and_idle_scans_read_nothing() -> None:
    rt = Runtime()
    rt.items = {"a": info("a"), "b": info("b", status=Status.EXITED)}
    bus = EventBus()
    sub = bus.subscribe()
    publisher = EnginePublisher(bus, cast(Any, rt), view=view_of(rt), poll_s=3600)
    publisher.start()  # b had exited before: not news
    try:
        publisher.scan()
        assert sub.get(0) is None
        lists = rt.lists
        for _ in range(5):
            publisher.scan()
        assert rt.lists == lists  # the generation did not move: nothing was read
        rt.change("a", status=Status.EXITED, exit_code=1)
        publisher.scan()
        publisher.scan()
        event = sub.get(0)
        assert event is not None
        assert (event.container_id, event.container_event_type) == (
            "a", pb.CONTAINER_STOPPED_EVENT)
        assert [s.state for s in event.containers_statuses] == [pb.CONTAINER_EXITED]
        assert sub.get(0) is None  # once
    finally:
        publisher.stop()
        sub.close()


def test_without_subscribers_no_statuses_are_read() -> None:
    rt = Runtime()
    rt.items = {"a": info("a")}
    bus = EventBus()
    publisher = EnginePublisher(bus, cast(Any, rt), view=view_of(rt), poll_s=3600)
    lists = rt.lists
    publisher.publish("a", "sa", pb.CONTAINER_STARTED_EVENT)
    assert rt.lists == lists
    sub = bus.subscribe()
    publisher.publish("a", "sa", pb.CONTAINER_STARTED_EVENT)
    event = sub.get(0)
    assert event is not None and [s.id for s in event.containers_statuses] == ["a"]
    sub.close()
