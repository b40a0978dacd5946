from __future__ import annotations

import io

import pytest

from engine.errors import ResourceExhausted
from engine.graph.prefetch import Prefetch


class Failing:
    def __init__(self) -> None:
        self.calls = 0

    def read(self, n: int = -1, /) -> bytes:
        self.calls += 1
        if self.calls > 2:
            raise ResourceExhausted("too big")
        return b"x" * 10


def test_reads_everything_in_order() -> None:
    data = bytes(range(256)) * 10_000
    with Prefetch(io.BytesIO(data), chunk=4096, depth=2) as p:
        out = b"".join(iter(lambda: p.read(1000), b""))
    assert out == data


def test_errors_reach_the_reader() -> None:
    with Prefetch(Failing(), chunk=10) as p:
        assert p.read(100) == b"x" * 10
        assert p.read(5) == b"x" * 5 and p.read(100) == b"x" * 5
        with pytest.raises(ResourceExhausted):
            p.read(100)


def test_closing_early_stops_the_thread() -> None:
    p = Prefetch(io.BytesIO(b"z" * (1 << 22)), chunk=1024, depth=1)
    assert p.read(10) == b"z" * 10
    p.close()
    assert not p._thread.is_alive()
