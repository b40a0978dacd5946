"""Single-use, short-lived tokens that name a prepared streaming session.

Exec, Attach and PortForward register a session and hand the client a URL containing a
token; the first request that presents it consumes it. A token presented twice, or after
its time to live, is refused. The clock is injectable so expiry is tested without sleeping.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from engine.errors import NotFound, ResourceExhausted

S = TypeVar("S")

TOKEN_TTL_S = 60.0
MAX_PENDING = 1000  # prepared but unused sessions


class TokenStore(Generic[S]):
    def __init__(self, *, ttl_s: float = TOKEN_TTL_S, max_pending: int = MAX_PENDING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._max = max_pending
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, tuple[float, S]] = OrderedDict()

    def _expire(self, now: float) -> None:
        while self._pending:
            token, (deadline, _) = next(iter(self._pending.items()))
            if deadline > now:
                break
            del self._pending[token]

    def issue(self, session: S) -> str:
        with self._lock:
            now = self._clock()
            self._expire(now)
            if len(self._pending) >= self._max:
                raise ResourceExhausted(
                    f"{self._max} streaming sessions are already waiting for a client")
            token = secrets.token_urlsafe(18)
            self._pending[token] = (now + self._ttl, session)
            return token

    def consume(self, token: str) -> S:
        """The session of `token`, which is then gone; NotFound if unknown, used or expired."""
        with self._lock:
            now = self._clock()
            entry = self._pending.pop(token, None)
            self._expire(now)
        if entry is None or entry[0] <= now:
            raise NotFound("unknown, used or expired streaming token")
        return entry[1]

    def pending(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._pending)
