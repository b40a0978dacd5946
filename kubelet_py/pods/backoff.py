"""Restart and image-pull back-off: 10 s doubling to 5 min, forgotten after 10 min quiet.

As upstream: the first restart is immediate and arms a 10 s delay; each restart inside the
current delay waits it out and doubles it; an entry not touched for 2 x 5 min is dropped,
so a container that ran for 10 minutes restarts immediately again.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

INITIAL = 10.0
MAXIMUM = 300.0
FORGET_AFTER = 2 * MAXIMUM


@dataclasses.dataclass(frozen=True)
class BackoffEntry:
    delay: float
    """The delay armed by the last attempt."""
    at: dt.datetime
    """When the last attempt was made."""

    def until(self) -> dt.datetime:
        return self.at + dt.timedelta(seconds=self.delay)


def in_backoff(entry: BackoffEntry | None, *, since: dt.datetime, now: dt.datetime) -> bool:
    """Whether an attempt must still wait: the last event `since` is inside the delay."""
    if entry is None or _forgotten(entry, since):
        return False
    return (now - since).total_seconds() < entry.delay


def next_entry(entry: BackoffEntry | None, *, now: dt.datetime) -> BackoffEntry:
    """The entry after an attempt at `now`."""
    if entry is None or _forgotten(entry, now):
        return BackoffEntry(delay=INITIAL, at=now)
    return BackoffEntry(delay=min(MAXIMUM, entry.delay * 2), at=now)


def _forgotten(entry: BackoffEntry, when: dt.datetime) -> bool:
    return (when - entry.at).total_seconds() > FORGET_AFTER
