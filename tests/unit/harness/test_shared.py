from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.harness.shared import Shared


def test_one_instance_for_every_user_closed_after_the_last() -> None:
    log: list[str] = []

    @contextlib.contextmanager
    def make() -> Iterator[int]:
        log.append(f"open {len(log)}")
        yield len(log)
        log.append("close")

    shared: Shared[int] = Shared()
    with shared.use(make) as first:
        with shared.use(make) as second:
            assert first == second == 1
        assert log == ["open 0"]  # a user left, one remains
    assert log == ["open 0", "close"]
    with shared.use(make) as again:  # after the last user, the next one makes a new one
        assert again == 3
    assert log == ["open 0", "close", "open 2", "close"]


def test_a_failed_make_keeps_nothing() -> None:
    @contextlib.contextmanager
    def broken() -> Iterator[int]:
        raise RuntimeError("no registry")
        yield 0  # pragma: no cover

    @contextlib.contextmanager
    def working() -> Iterator[int]:
        yield 7

    shared: Shared[int] = Shared()
    with pytest.raises(RuntimeError, match="no registry"), shared.use(broken):
        pass
    with shared.use(working) as value:
        assert value == 7
