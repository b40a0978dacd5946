"""The ServicerContext handed to handlers: abort, callbacks, deadlines, metadata."""
from __future__ import annotations

import grpc
import pytest

from cri.h2.context import Aborted, Context


def context(deadline: float | None = None, now: float = 100.0) -> Context:
    return Context(headers=[(b":path", b"/s/M"), (b"x-id", b"7")], peer="unix:/x",
                   deadline=deadline, monotonic=lambda: now)


def test_abort_raises_with_the_status_set() -> None:
    ctx = context()
    with pytest.raises(Aborted):
        ctx.abort(grpc.StatusCode.NOT_FOUND, "gone")
    assert (ctx.code(), ctx.details()) == (grpc.StatusCode.NOT_FOUND, "gone")
    with pytest.raises(ValueError):
        ctx.abort(grpc.StatusCode.OK, "not an error")


def test_callbacks_run_once_when_the_call_ends_and_not_after() -> None:
    ctx = context()
    ran: list[str] = []
    assert ctx.add_callback(lambda: ran.append("a"))
    assert ctx.add_callback(lambda: 1 / 0)  # a failing callback does not stop the others
    assert ctx.add_callback(lambda: ran.append("b"))
    assert ctx.is_active()
    ctx.end()
    ctx.end()
    assert ran == ["a", "b"] and not ctx.is_active()
    assert not ctx.add_callback(lambda: ran.append("late"))


def test_time_remaining_and_metadata() -> None:
    assert context().time_remaining() is None
    assert context(deadline=102.5).time_remaining() == pytest.approx(2.5)
    assert context(deadline=99.0).time_remaining() == 0.0
    ctx = context()
    assert ctx.invocation_metadata() == (("x-id", "7"),)
    assert ctx.peer() == "unix:/x"
    ctx.send_initial_metadata((("x-a", "1"),))
    ctx.initial_sent = True
    with pytest.raises(ValueError):
        ctx.send_initial_metadata((("x-a", "2"),))


def test_cancel_asks_the_server() -> None:
    asked: list[bool] = []
    ctx = Context(headers=[], peer="", deadline=None, on_cancel=lambda: asked.append(True))
    ctx.cancel()
    assert asked == [True]
