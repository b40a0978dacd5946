"""Precise registry errors, subclasses of engine/errors.py."""
from __future__ import annotations

from engine.errors import NotFound, PermissionDenied, Unauthenticated


class AuthenticationError(Unauthenticated):
    """The registry refused us (401): no or wrong credentials, or a challenge we cannot
    answer."""


class AccessDenied(PermissionDenied):
    """The registry answered 403: the repository is not ours to pull."""


class PlatformNotFound(NotFound):
    """An image index has no manifest for this machine's platform."""
