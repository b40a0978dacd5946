"""The engine's one exception tree. The CRI layer maps each class to one gRPC status code."""
from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class NotFound(EngineError):
    """The named image, layer, sandbox or container does not exist."""


class AlreadyExists(EngineError):
    """A name or ID is already taken."""


class InvalidArgument(EngineError):
    """The request itself is malformed or refers to something it may not."""


class FailedPrecondition(EngineError):
    """The object is not in a state that allows the operation."""


class DeadlineExceeded(EngineError):
    """The operation did not finish in the time it was given."""


class ResourceExhausted(EngineError):
    """A cap was hit: disk, size, entries, address range."""


class Unavailable(EngineError):
    """A dependency (registry, CNI plugin, kernel feature) cannot be reached or used now."""


class Unauthenticated(EngineError):
    """A remote service (a registry) refused the credentials given, or their absence."""


class PermissionDenied(EngineError):
    """A remote service (a registry) took the credentials and still refused the access."""
