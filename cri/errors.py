"""How failures reach a CRI client: one gRPC status code per error class.

The engine raises only the classes of `engine.errors`; the CRI layer adds the two cases the
engine cannot know about: an RPC this build does not serve (`Unimplemented`) and a request
that is not even a valid protobuf (`MalformedRequest`). `status_for` is the single mapping.
"""
from __future__ import annotations

import dataclasses

import grpc

from engine import errors as engine_errors


class CriError(Exception):
    """Base of the errors raised by the CRI layer itself."""


class Unimplemented(CriError):
    """The RPC, or the requested variant of it, is not served by this build."""


class MalformedRequest(CriError):
    """The request bytes do not decode as the RPC's request message."""


@dataclasses.dataclass(frozen=True)
class Status:
    code: grpc.StatusCode
    message: str


# Most specific classes first: the first isinstance match wins.
_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (engine_errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (engine_errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (engine_errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (engine_errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (engine_errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (engine_errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (engine_errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (engine_errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (engine_errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
    (MalformedRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (engine_errors.EngineError, grpc.StatusCode.INTERNAL),
    (CriError, grpc.StatusCode.INTERNAL),
)


def is_mapped(exc: BaseException) -> bool:
    """True for the errors raised on purpose (engine or CRI); others are bugs."""
    return isinstance(exc, engine_errors.EngineError | CriError)


def status_for(exc: BaseException) -> Status:
    """The gRPC status a client sees for `exc` (INTERNAL for anything unexpected)."""
    message = str(exc) or type(exc).__name__
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return Status(code, message)
    return Status(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {message}")
