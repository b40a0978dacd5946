from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from kubelet_py.client.errors import ApiUnavailable, Gone
from kubelet_py.client.informer import Backoff, Informer, Store

from .fakes import ManualClock, run_async


def pod(name: str, rv: str, node: str = "n1") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
            "spec": {"nodeName": node}}


class FakeApi:
    """Scripted list pages and watch streams; records every request's parameters."""

    def __init__(self) -> None:
        self.lists: list[dict[str, Any]] = []
        self.watches: list[list[dict[str, Any]] | Exception] = []
        self.list_params: list[dict[str, str]] = []
        self.watch_params: list[dict[str, str]] = []

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        self.list_params.append(dict(params or {}))
        return self.lists.pop(0)

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        self.watch_params.append(dict(params))
        if not self.watches:
            await asyncio.Event().wait()  # a quiet watch: block until cancelled
        script = self.watches.pop(0)
        if isinstance(script, Exception):
            raise script
        for event in script:
            yield event


def listing(rv: str, *items: dict[str, Any], cont: str = "") -> dict[str, Any]:
    meta = {"resourceVersion": rv, **({"continue": cont} if cont else {})}
    return {"metadata": meta, "items": list(items)}


async def run_until_idle(informer: Informer, api: FakeApi) -> None:
    task = asyncio.create_task(informer.run())
    for _ in range(200):
        await asyncio.sleep(0)
        if not api.watches and not api.lists:
            break
    for _ in range(20):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_store_replace_yields_difference() -> None:
    store = Store()
    store.replace([pod("a", "1"), pod("b", "1")])
    events = store.replace([pod("b", "2"), pod("c", "1")])
    assert sorted((k, o["metadata"]["name"]) for k, o in events) == [
        ("ADDED", "c"), ("DELETED", "a"), ("MODIFIED", "b")]
    assert sorted(store.keys()) == ["default/b", "default/c"]


def test_store_replace_adds_oldest_first() -> None:
    items = [pod(name, "1") for name in ("a", "b", "c")]
    for item, created in zip(items, ("2026-01-01T00:00:09Z", "2026-01-01T00:00:01Z",
                                     "2026-01-01T00:00:05Z"), strict=True):
        item["metadata"]["creationTimestamp"] = created
    events = Store().replace(items)
    assert [o["metadata"]["name"] for _, o in events] == ["b", "c", "a"]


def test_backoff_caps() -> None:
    b = Backoff(initial=1.0, factor=2.0, cap=5.0)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


@run_async
async def test_list_pages_then_watch_with_selector_and_bookmarks() -> None:
    api = FakeApi()
    api.lists = [listing("5", pod("a", "4"), cont="tok"), listing("10", pod("b", "9"))]
    api.watches = [[{"type": "ADDED", "object": pod("c", "11")},
                    {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}]]
    seen: list[tuple[str, str]] = []
    informer = Informer(api, "/api/v1/pods", field_selector="spec.nodeName=n1",
                        handler=lambda k, o: seen.append((k, o["metadata"]["name"])),
                        clock=ManualClock())
    await run_until_idle(informer, api)
    assert api.list_params[0]["fieldSelector"] == "spec.nodeName=n1"
    assert api.list_params[1]["continue"] == "tok"
    first = api.watch_params[0]
    assert first["resourceVersion"] == "10"
    assert first["allowWatchBookmarks"] == "true"
    assert first["fieldSelector"] == "spec.nodeName=n1"
    assert api.watch_params[1]["resourceVersion"] == "15"  # the bookmark advanced it
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]
    assert informer.synced.is_set()


@run_async
async def test_relist_after_410_error_event() -> None:
    api = FakeApi()
    api.lists = [listing("10", pod("a", "9"), pod("b", "9")),
                 listing("50", pod("b", "40"), pod("d", "45"))]
    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
    api.watches = [[{"type": "ERROR", "object": gone}]]
    seen: list[tuple[str, str]] = []
    informer = Informer(api, "/api/v1/pods", handler=lambda k, o: seen.append(
        (k, o["metadata"]["name"])), clock=ManualClock())
    await run_until_idle(informer, api)
    assert informer.lists == 2
    assert seen[2:] == [("DELETED", "a"), ("MODIFIED", "b"), ("ADDED", "d")]
    assert api.watch_params[-1]["resourceVersion"] == "50"
    assert sorted(informer.store.keys()) == ["default/b", "default/d"]


@run_async
async def test_relist_after_http_410() -> None:
    api = FakeApi()
    api.lists = [listing("10"), listing("20")]
    api.watches = [Gone(410, "Expired", "too old")]
    informer = Informer(api, "/api/v1/pods", clock=ManualClock())
    await run_until_idle(informer, api)
    assert informer.lists == 2


@run_async
async def test_broken_stream_rewatches_from_last_rv_with_backoff() -> None:
    api = FakeApi()
    api.lists = [listing("10")]
    api.watches = [[{"type": "ADDED", "object": pod("a", "12")}],
                   ApiUnavailable("connection reset"), ApiUnavailable("refused")]
    clock = ManualClock()
    informer = Informer(api, "/api/v1/pods", clock=clock, backoff=Backoff(1.0, 2.0, 30.0))
    await run_until_idle(informer, api)
    assert informer.lists == 1  # no relist for a plain disconnect
    assert [p["resourceVersion"] for p in api.watch_params] == ["10", "12", "12", "12"]
    assert clock.sleeps == [1.0, 2.0]


@run_async
async def test_handler_failure_does_not_stop_informer() -> None:
    api = FakeApi()
    api.lists = [listing("10", pod("a", "1"))]
    api.watches = [[{"type": "DELETED", "object": pod("a", "2")}]]

    def boom(kind: str, obj: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    informer = Informer(api, "/api/v1/pods", handler=boom, clock=ManualClock())
    await run_until_idle(informer, api)
    assert len(informer.store) == 0


@run_async
async def test_repeated_410_backs_off_instead_of_spinning() -> None:
    api = FakeApi()
    api.lists = [listing("10"), listing("20"), listing("30")]
    api.watches = [Gone(410, "Expired", "old"), Gone(410, "Expired", "old")]
    clock = ManualClock()
    informer = Informer(api, "/api/v1/pods", clock=clock, backoff=Backoff(1.0, 2.0, 30.0))
    await run_until_idle(informer, api)
    assert informer.lists == 3
    assert clock.sleeps == [1.0]
