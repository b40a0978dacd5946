from __future__ import annotations

import pytest

from cri.streaming.tokens import TokenStore
from engine.errors import NotFound, ResourceExhausted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_single_use() -> None:
    store: TokenStore[str] = TokenStore(clock=Clock())
    token = store.issue("exec c1")
    assert store.consume(token) == "exec c1"
    with pytest.raises(NotFound):
        store.consume(token)  # replayed


def test_a_token_expires_after_a_minute() -> None:
    clock = Clock()
    store: TokenStore[str] = TokenStore(clock=clock)
    early, late = store.issue("a"), store.issue("b")
    clock.now += 59.9
    assert store.consume(early) == "a"
    clock.now += 0.1  # exactly 60 s after issue
    with pytest.raises(NotFound):
        store.consume(late)
    assert store.pending() == 0


def test_unknown_tokens_and_a_full_store() -> None:
    store: TokenStore[int] = TokenStore(clock=Clock(), max_pending=2)
    with pytest.raises(NotFound):
        store.consume("nope")
    tokens = {store.issue(1), store.issue(2)}
    assert len(tokens) == 2 and all(len(t) >= 20 for t in tokens)
    with pytest.raises(ResourceExhausted):
        store.issue(3)
