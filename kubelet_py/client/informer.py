"""Informers: list, then watch from the list's resourceVersion, into a local store.

- Bookmarks are requested and only advance the resourceVersion.
- `410 Gone` (as an HTTP status or as an ERROR event) triggers a fresh list; the store is
  replaced and the difference is delivered as synthetic ADDED/MODIFIED/DELETED events.
- A broken connection re-watches from the last resourceVersion after a capped backoff.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from kubelet_py.client.errors import ApiError, ApiUnavailable, Gone
from kubelet_py.clock import Clock, RealClock

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Handler = Callable[[str, Obj], None]
"""Called with ("ADDED" | "MODIFIED" | "DELETED", object) on every change of the store."""


class ListWatcher(Protocol):
    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> Obj: ...

    def watch(self, path: str, params: Mapping[str, str]) -> Any:
        """An async iterator of watch event dicts."""
        ...


def object_key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


class Store:
    """The informer's local cache, keyed `namespace/name`; also the lister."""

    def __init__(self) -> None:
        self._items: dict[str, Obj] = {}

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def items(self) -> list[Obj]:
        return [*self._items.values()]

    def keys(self) -> list[str]:
        return [*self._items]

    def __len__(self) -> int:
        return len(self._items)

    def apply(self, kind: str, obj: Obj) -> None:
        if kind == "DELETED":
            self._items.pop(object_key(obj), None)
        else:
            self._items[object_key(obj)] = obj

    def replace(self, items: list[Obj]) -> list[tuple[str, Obj]]:
        """Swap in a full listing; return the events that turn the old store into it."""
        fresh = {object_key(o): o for o in items}
        events: list[tuple[str, Obj]] = []
        for key, old in self._items.items():
            if key not in fresh:
                events.append(("DELETED", old))
        # Oldest first, as the upstream kubelet admits pods in creation order.
        for key, obj in sorted(fresh.items(), key=lambda kv: (_created(kv[1]), kv[0])):
            previous = self._items.get(key)
            if previous is None:
                events.append(("ADDED", obj))
            elif _rv(previous) != _rv(obj):
                events.append(("MODIFIED", obj))
        self._items = fresh
        return events


def _created(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("creationTimestamp") or "")


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


@dataclasses.dataclass(frozen=True)
class Backoff:
    initial: float = 0.8
    factor: float = 2.0
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.initial * self.factor ** max(0, failures - 1)))


class Informer:
    def __init__(self, client: ListWatcher, path: str, *,
                 field_selector: str | None = None, label_selector: str | None = None,
                 handler: Handler | None = None, clock: Clock | None = None,
                 backoff: Backoff = Backoff(), page_size: int = 500,
                 watch_timeout: int = 300) -> None:
        self._client = client
        self._path = path
        self._selectors: dict[str, str] = {}
        if field_selector:
            self._selectors["fieldSelector"] = field_selector
        if label_selector:
            self._selectors["labelSelector"] = label_selector
        self._handlers: list[Handler] = [handler] if handler else []
        self._clock = clock or RealClock()
        self._backoff = backoff
        self._page_size = page_size
        self._watch_timeout = watch_timeout
        self.store = Store()
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.lists = 0
        """How many full lists ran (the first one plus every relist after 410 Gone)."""

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def _emit(self, kind: str, obj: Obj) -> None:
        for handler in self._handlers:
            try:
                handler(kind, obj)
            except Exception:
                log.exception("informer %s: handler failed on %s %s", self._path, kind,
                              object_key(obj))

    async def list(self) -> None:
        items: list[Obj] = []
        params = {**self._selectors, "limit": str(self._page_size)}
        while True:
            page = await self._client.get(self._path, params=params)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                break
            params = {**params, "continue": str(meta["continue"])}
        self.resource_version = str(meta.get("resourceVersion", ""))
        self.lists += 1
        for kind, obj in self.store.replace(items):
            self._emit(kind, obj)
        self.synced.set()

    async def watch_once(self) -> None:
        """One watch request from the current resourceVersion; raises Gone when too old."""
        params = {**self._selectors, "resourceVersion": self.resource_version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(self._watch_timeout)}
        async for event in self._client.watch(self._path, params):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                raise ApiError.from_status(int(obj.get("code") or 500), obj)
            rv = _rv(obj)
            if rv:
                self.resource_version = rv
            if kind == "BOOKMARK":
                continue
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self.store.apply(kind, obj)
                self._emit(kind, obj)

    async def run(self) -> None:
        """List and watch forever (cancel the task to stop)."""
        failures = 0
        gone = 0
        need_list = True
        while True:
            try:
                if need_list:
                    await self.list()
                    need_list = False
                await self.watch_once()
                failures = gone = 0
            except Gone:
                log.info("informer %s: resourceVersion %s expired, relisting", self._path,
                         self.resource_version)
                need_list = True
                gone += 1
                if gone > 1:  # expired again right after a relist: do not spin
                    await self._clock.sleep(self._backoff.delay(gone - 1))
            except (ApiUnavailable, ApiError, ValueError) as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning("informer %s: %s; retrying in %.1fs", self._path, exc, delay)
                await self._clock.sleep(delay)
