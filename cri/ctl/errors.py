"""How enginectl fails: one line on stderr and a docker-like exit code."""
from __future__ import annotations

import grpc

EXIT_ENGINECTL = 125  # docker's code for errors of the client or the daemon


class CtlError(Exception):
    """A failure to report as `enginectl: <message>`, exiting with `code`."""

    def __init__(self, message: str, code: int = EXIT_ENGINECTL) -> None:
        super().__init__(message)
        self.code = code


def not_running(endpoint: str, detail: str) -> CtlError:
    return CtlError(f"cannot connect to engined at {endpoint} ({detail}); is engined running? "
                    "Start one with `make engine` and pass the endpoint it prints, as "
                    "--endpoint or $ENGINECTL_ENDPOINT")


def from_rpc(exc: grpc.RpcError, *, endpoint: str, method: str = "") -> CtlError:
    """One line for a gRPC failure: `NOT_FOUND: image 'x' not found`."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else "") or str(code.name)
    if code is grpc.StatusCode.UNAVAILABLE and (
            "connect" in details.lower() or "No such file" in details):
        return not_running(endpoint, details)
    if method and details.startswith(f"{method}: "):
        details = details[len(method) + 2:]
    return CtlError(f"{code.name}: {details}")
