"""The reaper runs deferred deletions in order, off the caller's thread, and lets callers
wait for the ones of a key; Background runs one function on a thread and joins it."""
from __future__ import annotations

import threading

from engine.networkdriver.plugins.reaper import Reaper


def test_jobs_run_in_order_and_wait_returns_when_a_key_is_done() -> None:
    reaper = Reaper(workers=1, linger=0.05)
    gate = threading.Event()
    done: list[str] = []
    reaper.submit("ns1", lambda: (gate.wait(30), done.append("a")))
    reaper.submit("ns2", lambda: done.append("b"))
    assert reaper.pending("ns1") == 1 and reaper.pending() == 2
    assert not reaper.wait("ns2", timeout=0.05)  # queued behind ns1's job
    gate.set()
    assert reaper.wait("ns2", timeout=30) and reaper.wait(timeout=30)
    assert done == ["a", "b"] and reaper.pending() == 0


def test_a_failing_job_is_logged_and_does_not_stop_the_worker() -> None:
    reaper = Reaper(linger=0.05)
    ran: list[int] = []

    def boom() -> None:
        raise OSError("gone")

    reaper.submit("k", boom)
    reaper.submit("k", lambda: ran.append(1))
    assert reaper.wait("k", timeout=30)
    assert ran == [1]


def test_workers_are_not_daemons_run_jobs_at_once_and_stop_when_idle() -> None:
    reaper = Reaper(workers=3, linger=0.05)
    gate = threading.Barrier(3, timeout=30)  # passes only if three jobs run at the same time
    seen: list[bool] = []
    for key in ("a", "b", "c"):
        reaper.submit(key, lambda: (gate.wait(), seen.append(threading.current_thread().daemon)))
    assert reaper.wait(timeout=30) and seen == [False, False, False]
    reaper.submit("d", lambda: None)  # at most one more worker for one job
    assert reaper.workers <= 3 and reaper.wait(timeout=30)
    with reaper._done:
        assert reaper._done.wait_for(lambda: reaper._workers == 0, 30)


def test_background_returns_the_value_or_raises_the_error_on_join() -> None:
    from engine.networkdriver.plugins.background import Background

    gate = threading.Event()
    job = Background(lambda: (gate.wait(30), threading.get_ident())[1])
    gate.set()
    assert job.join() != threading.get_ident()  # it ran on a thread of its own
    assert Background(threading.get_ident, inline=True).join() == threading.get_ident()

    def fail() -> None:
        raise ValueError("boom")

    failed = Background(fail)
    try:
        failed.join()
    except ValueError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("join() did not re-raise")
