"""A read that finds a container's monitor dead answers at once; the kill waits on a thread."""
from __future__ import annotations

import threading
from typing import Any

import pytest

from engine.runtime import container, reaping
from engine.runtime.state import REASON_MONITOR_DIED, ContainerState
from engine.runtime.status import Status


class _Store:
    def __init__(self) -> None:
        self.removed = False

    def load_container(self, cid: str) -> object:
        if self.removed:
            from engine.errors import NotFound
            raise NotFound(cid)
        return object()


class _Ctx:
    def __init__(self) -> None:
        self.store = _Store()
        self.now = 1000

    def clock(self) -> int:
        return self.now


class _Rec:
    id = "c" * 64
    sandbox_id = "s" * 64


def _running() -> ContainerState:
    return ContainerState(status=Status.RUNNING, pid=42, created_at=1, started_at=2)


def test_read_answers_before_the_slow_kill_and_keeps_its_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    release, called = threading.Event(), threading.Event()
    marked: list[ContainerState | None] = []

    def slow_mark(ctx: Any, rec: Any, *, dead: ContainerState | None = None) -> ContainerState:
        called.set()
        assert release.wait(30)
        marked.append(dead)
        assert dead is not None
        return dead

    monkeypatch.setattr(container, "mark_monitor_died", slow_mark)
    ctx = _Ctx()
    r = reaping.DeadMonitorReaper(ctx, lock_for=lambda sid: threading.RLock())  # type: ignore[arg-type]
    first = r.state(_Rec(), _running())  # type: ignore[arg-type]
    assert (first.status, first.exit_code, first.reason, first.finished_at) == (
        Status.EXITED, 137, REASON_MONITOR_DIED, 1000)
    assert called.wait(30)  # the kill is under way, the read already answered
    ctx.now = 2000
    assert r.state(_Rec(), _running()) == first  # type: ignore[arg-type]
    assert r.pending() == 1
    release.set()
    for _ in range(6000):  # 60 s at most
        if not r.pending():
            break
        threading.Event().wait(0.01)
    assert r.pending() == 0 and marked == [first]


def test_a_failed_reap_is_retried_by_the_next_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.errors import Unavailable
    calls: list[int] = []

    def failing(ctx: Any, rec: Any, *, dead: ContainerState | None = None) -> ContainerState:
        calls.append(1)
        raise Unavailable("cgroup busy")

    monkeypatch.setattr(container, "mark_monitor_died", failing)
    r = reaping.DeadMonitorReaper(_Ctx(), lock_for=lambda sid: threading.RLock())  # type: ignore[arg-type]
    r.state(_Rec(), _running())  # type: ignore[arg-type]
    for _ in range(6000):  # 60 s at most
        if not r.pending():
            break
        threading.Event().wait(0.01)
    r.state(_Rec(), _running())  # type: ignore[arg-type]
    for _ in range(6000):  # 60 s at most
        if len(calls) == 2 and not r.pending():
            break
        threading.Event().wait(0.01)
    assert len(calls) == 2


def test_a_container_removed_meanwhile_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(container, "mark_monitor_died",
                        lambda *a, **k: calls.append(1))  # type: ignore[arg-type,return-value]
    ctx = _Ctx()
    ctx.store.removed = True
    r = reaping.DeadMonitorReaper(ctx, lock_for=lambda sid: threading.RLock())  # type: ignore[arg-type]
    r.state(_Rec(), _running())  # type: ignore[arg-type]
    for _ in range(6000):  # 60 s at most
        if not r.pending():
            break
        threading.Event().wait(0.01)
    assert r.pending() == 0 and calls == []
