"""Precise subclasses of engine/errors.py for content verification."""
from __future__ import annotations

from engine.errors import InvalidArgument, Unavailable


class DigestMismatch(InvalidArgument):
    """Content does not hash to the digest it was named by."""


class SizeMismatch(InvalidArgument):
    """Content is longer or shorter than its descriptor says."""


class TruncatedContent(Unavailable):
    """A stream ended before the expected number of bytes arrived (retryable)."""
