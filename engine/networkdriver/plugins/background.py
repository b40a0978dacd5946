"""One function on a thread of its own, joined later: for a plugin exec to overlap a kernel
wait with other work. ``_thread`` only: ``threading`` costs a plugin exec ~1 ms of CPU."""
from __future__ import annotations

import _thread

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Background:
    """``Background(fn)`` starts ``fn()``; ``join()`` returns its value or raises its error.
    ``inline=True`` runs it at once on the calling thread instead (same interface)."""

    def __init__(self, fn: Callable[[], Any], *, inline: bool = False) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._done = _thread.allocate_lock()
        self._done.acquire()
        if inline:
            self._run(fn)
        else:
            _thread.start_new_thread(self._run, (fn,))

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # handed to join()
            self._error = exc
        finally:
            self._done.release()

    def join(self) -> Any:
        with self._done:
            pass
        if self._error is not None:
            raise self._error
        return self._value
