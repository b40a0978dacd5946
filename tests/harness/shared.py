"""One instance per test process of what a session-scoped fixture makes.

A session fixture imported into a test module (`from tests.harness.registry import
local_registry`) gets a fixture definition of its own there, and pytest caches each
definition apart: imported into five modules, it starts five times. `Shared` keeps one
instance for every definition that uses it, and closes it when the last one is torn down.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class Shared(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stack: contextlib.ExitStack | None = None
        self._value: T | None = None
        self._users = 0

    @contextlib.contextmanager
    def use(self, make: Callable[[], contextlib.AbstractContextManager[T]]) -> Iterator[T]:
        """The instance, made by `make()` for the first user; closed after the last."""
        with self._lock:
            if self._stack is None:
                stack = contextlib.ExitStack()
                self._value = stack.enter_context(make())  # on failure, nothing is kept
                self._stack = stack
            self._users += 1
            value = self._value
        try:
            yield cast(T, value)  # set together with the stack
        finally:
            with self._lock:
                self._users -= 1
                stack_to_close = self._stack if self._users == 0 else None
                if stack_to_close is not None:
                    self._stack, self._value = None, None
            if stack_to_close is not None:
                stack_to_close.close()
