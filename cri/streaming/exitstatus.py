"""The Status JSON sent on the error channel when a streamed command ends.

kubectl and crictl read it to learn the exit code: success is a bare Success status; a
non-zero exit is a Failure with reason NonZeroExitCode and the code as an ExitCode cause.
"""
from __future__ import annotations

import json


def success() -> bytes:
    return json.dumps({"metadata": {}, "status": "Success"}).encode()


def exit_code(code: int) -> bytes:
    if code == 0:
        return success()
    return json.dumps({
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }).encode()


def failure(message: str) -> bytes:
    """An error that is not an exit code (the command could not be run at all)."""
    return json.dumps({"metadata": {}, "status": "Failure", "message": message}).encode()


def parse_exit_code(payload: bytes) -> int | None:
    """The exit code a Status carries (0 for Success), None for a non-exit failure."""
    status = json.loads(payload)
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in status.get("details", {}).get("causes", []):
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
    return None
