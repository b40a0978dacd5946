"""One call run on a thread of its own while the caller goes on (RunPodSandbox's CNI ADD
beside the monitor's spawn): its result, or its exception re-raised, in the caller."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    def __init__(self, call: Callable[[], T], *, name: str) -> None:
        self._call = call
        self._value: list[T] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value.append(self._call())
        except BaseException as e:  # handed to the caller by result()
            self._error = e

    def wait(self) -> None:
        """Until the call has ended, whatever its outcome."""
        self._thread.join()

    def result(self) -> T:
        """The call's return value, once it has ended; its exception, raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value[0]
