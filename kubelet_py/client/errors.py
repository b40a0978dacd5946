"""API errors as the API server reports them (a `Status` object and an HTTP code)."""
from __future__ import annotations

from typing import Any

from kubelet_py.errors import KubeletError


class ApiError(KubeletError):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message

    @classmethod
    def from_status(cls, code: int, body: Any) -> ApiError:
        reason, message = "", ""
        if isinstance(body, dict):
            reason = str(body.get("reason", ""))
            message = str(body.get("message", ""))
        elif body:
            message = str(body)[:500]
        kind = _BY_CODE.get(code, ApiError)
        return kind(code, reason, message)


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: the object exists already, or the resourceVersion is stale."""


class Forbidden(ApiError):
    """403: RBAC or an admission plugin (NodeRestriction) refused; retrying will not help."""


class Unauthorized(ApiError):
    pass


class Gone(ApiError):
    """410: the requested resourceVersion is older than the server keeps."""


class ApiUnavailable(KubeletError):
    """The API server could not be reached (connection refused, TLS, timeout)."""


_BY_CODE: dict[int, type[ApiError]] = {
    401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone}
