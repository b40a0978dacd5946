"""engine.runtime.background.Background: the call's value or its exception, in the caller."""
from __future__ import annotations

import threading

import pytest

from engine.errors import Unavailable
from engine.runtime.background import Background


def test_result_is_the_calls_value_from_another_thread() -> None:
    caller = threading.get_ident()
    job = Background(threading.get_ident, name="t")
    assert job.result() != caller


def test_the_calls_exception_is_raised_by_result_not_by_wait() -> None:
    def fail() -> int:
        raise Unavailable("no")

    job = Background(fail, name="t")
    job.wait()
    with pytest.raises(Unavailable, match="no"):
        job.result()
