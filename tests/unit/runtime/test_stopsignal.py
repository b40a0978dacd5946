"""Stop signal names as images (STOPSIGNAL) and the CRI give them."""
from __future__ import annotations

import signal

import pytest

from engine.errors import InvalidArgument
from engine.runtime.stopsignal import parse, resolve


@pytest.mark.parametrize("name,number", [
    ("SIGQUIT", signal.SIGQUIT), ("quit", signal.SIGQUIT), ("3", 3), ("SIGUSR1", 10),
    ("SIGRTMIN", signal.SIGRTMIN), ("SIGRTMIN+3", signal.SIGRTMIN + 3),
    ("SIGRTMAX-2", signal.SIGRTMAX - 2), ("SIGPWR", signal.SIGPWR), ("SIGCLD", signal.SIGCHLD),
])
def test_parse(name: str, number: int) -> None:
    assert parse(name) == number


@pytest.mark.parametrize("bad", ["SIGNOPE", "0", "99", "SIGRTMIN+40", "SIGRTMAX-40", "-9",
                                 "SIG_DFL", "TERM KILL"])
def test_unknown_signals_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        parse(bad)


def test_the_request_wins_over_the_image_then_sigterm() -> None:
    assert resolve(requested="SIGUSR2", image="SIGQUIT") == signal.SIGUSR2
    assert resolve(requested="", image="SIGQUIT") == signal.SIGQUIT
    assert resolve(requested="", image="") == signal.SIGTERM
