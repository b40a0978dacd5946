"""Single-flight: concurrent callers asking for the same key share one execution."""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, Future[T]] = {}

    def do(self, key: str, fn: Callable[[], T]) -> tuple[T, bool]:
        """Run fn once per key at a time; returns (result, shared) where shared means we
        waited on someone else's call. Exceptions propagate to every waiter."""
        with self._lock:
            fut = self._calls.get(key)
            owner = fut is None
            if fut is None:
                fut = Future()
                self._calls[key] = fut
        if not owner:
            return fut.result(), True
        try:
            result = fn()
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        else:
            fut.set_result(result)
            return result, False
        finally:
            with self._lock:
                del self._calls[key]
