"""Precise subclasses of engine/errors.py for content verification."""
from __future__ import annotations

import errno

from engine.errors import EngineError, InvalidArgument, ResourceExhausted, Unavailable


class DigestMismatch(InvalidArgument):
    """Content does not hash to the digest it was named by."""


class SizeMismatch(InvalidArgument):
    """Content is longer or shorter than its descriptor says."""


class TruncatedContent(Unavailable):
    """A stream ended before the expected number of bytes arrived (retryable)."""


def from_os_error(exc: OSError, what: str) -> EngineError:
    """The engine error for a failed syscall while doing `what`."""
    msg = f"{what}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        return ResourceExhausted(msg)
    if exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS, errno.ENOSYS, errno.EOPNOTSUPP):
        return Unavailable(msg)
    return InvalidArgument(msg)
