"""Precise registry errors, subclasses of engine/errors.py."""
from __future__ import annotations

from engine.errors import FailedPrecondition, NotFound


class AuthenticationError(FailedPrecondition):
    """The registry refused us: no or wrong credentials, or an unusable challenge."""


class PlatformNotFound(NotFound):
    """An image index has no manifest for this machine's platform."""
