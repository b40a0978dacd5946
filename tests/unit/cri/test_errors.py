"""Each engine error class reaches the client as exactly one gRPC status code."""
from __future__ import annotations

import grpc
import pytest

from cri.errors import MalformedRequest, Unimplemented, is_mapped, status_for
from engine import errors
from engine.graph.errors import DigestMismatch
from engine.registry.errors import AccessDenied, AuthenticationError


@pytest.mark.parametrize(("exc", "code"), [
    (errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists("x"), grpc.StatusCode.ALREADY_EXISTS),
    (errors.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.ResourceExhausted("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
    (errors.Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
    (AuthenticationError("x"), grpc.StatusCode.UNAUTHENTICATED),  # a registry's 401
    (AccessDenied("x"), grpc.StatusCode.PERMISSION_DENIED),  # a registry's 403
    (errors.EngineError("x"), grpc.StatusCode.INTERNAL),
    (Unimplemented("x"), grpc.StatusCode.UNIMPLEMENTED),
    (MalformedRequest("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (DigestMismatch("x"), grpc.StatusCode.INVALID_ARGUMENT),  # subclasses keep their parent's
])
def test_status_for(exc: Exception, code: grpc.StatusCode) -> None:
    status = status_for(exc)
    assert status.code == code
    assert status.message == "x"
    assert is_mapped(exc)


def test_unexpected_exceptions_are_internal_and_flagged() -> None:
    exc = KeyError("boom")
    status = status_for(exc)
    assert status.code == grpc.StatusCode.INTERNAL
    assert "KeyError" in status.message
    assert not is_mapped(exc)
