"""Content digests (`sha256:<64 hex>`): parsing, hashing, chain IDs."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from engine.errors import InvalidArgument

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def validate(digest: str) -> str:
    """Return `digest` if it is a well-formed sha256 digest, else raise InvalidArgument."""
    if not _DIGEST.match(digest):
        raise InvalidArgument(f"invalid or unsupported digest {digest!r} (want sha256:<64 hex>)")
    return digest


def of_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    return validate(digest).split(":", 1)[1]


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """The OCI chain IDs of a stack of layers: C0 = D0, Cn = sha256(Cn-1 + " " + Dn)."""
    out: list[str] = []
    for diff_id in diff_ids:
        validate(diff_id)
        out.append(diff_id if not out else of_bytes(f"{out[-1]} {diff_id}".encode()))
    return out
