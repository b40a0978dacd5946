"""The signal StopContainer sends first: the request's (CRI ContainerConfig.stop_signal), else
the image's STOPSIGNAL, else SIGTERM. Names as images and the CRI write them: "SIGQUIT",
"QUIT", "3", "SIGRTMIN+3", "SIGRTMAX-1"."""
from __future__ import annotations

import signal

from engine.errors import InvalidArgument

DEFAULT = signal.SIGTERM


def parse(name: str) -> int:
    text = name.strip().upper()
    if text.isdigit():
        number = int(text)
    else:
        base = text if text.startswith("SIG") else f"SIG{text}"
        number = _named(base)
    if not 1 <= number <= signal.SIGRTMAX:
        raise InvalidArgument(f"stop signal {name!r} is not a signal number of this system")
    return number


def _named(name: str) -> int:
    for anchor, sign in (("SIGRTMIN+", 1), ("SIGRTMAX-", -1)):
        if name.startswith(anchor) and name[len(anchor):].isdigit():
            number = int((signal.SIGRTMIN if sign > 0 else signal.SIGRTMAX)
                         + sign * int(name[len(anchor):]))
            if not signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                raise InvalidArgument(f"stop signal {name!r} is outside the real-time range")
            return number
    if name in {"SIGRTMIN", "SIGRTMAX"}:
        return int(getattr(signal, name))
    value = getattr(signal.Signals, name, None) if name.isidentifier() else None
    if not isinstance(value, signal.Signals):
        raise InvalidArgument(f"unknown stop signal {name!r}")
    return int(value)


def resolve(*, requested: str, image: str) -> int:
    """The stop signal for a container: the request wins over the image."""
    for name in (requested, image):
        if name:
            return parse(name)
    return int(DEFAULT)
