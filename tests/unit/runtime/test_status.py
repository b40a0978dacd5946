from __future__ import annotations

import pytest

from engine.errors import FailedPrecondition
from engine.runtime.state import ContainerState
from engine.runtime.status import Status


def test_transitions() -> None:
    assert Status.CREATED.can_start() and not Status.RUNNING.can_start()
    assert Status.RUNNING.can_kill() and Status.CREATED.can_kill()
    assert not Status.EXITED.can_kill()
    assert Status.EXITED.can_delete() and Status.CREATED.can_delete()
    assert not Status.RUNNING.can_delete()
    assert Status.CREATED.can_become(Status.RUNNING)
    assert not Status.EXITED.can_become(Status.RUNNING)
    assert not Status.RUNNING.can_become(Status.CREATED)


def test_exited_only_once() -> None:
    state = ContainerState(status=Status.RUNNING, pid=5)
    done = state.exited(exit_code=1, reason="Error", message="", at=10)
    assert (done.status, done.exit_code, done.finished_at, done.pid) == (Status.EXITED, 1, 10, 5)
    with pytest.raises(FailedPrecondition):
        done.exited(exit_code=0, reason="Completed", message="", at=11)
