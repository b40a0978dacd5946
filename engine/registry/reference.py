"""Image references with Docker's normalisation.

`busybox` -> `docker.io/library/busybox:latest`; `host:5000/a/b@sha256:...` keeps its
digest; a name without a domain-like first component (no `.` or `:`, not `localhost`)
lives on docker.io; upper case in a repository, an empty component or a bad tag/digest
raises InvalidArgument.
"""
from __future__ import annotations

import dataclasses
import re

from engine.errors import InvalidArgument
from engine.graph import digest as dg

DOCKER_DOMAIN = "docker.io"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN = re.compile(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[0-9a-fA-F:.]+\])"
    r"(?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_MAX_NAME = 255


@dataclasses.dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What to ask the registry's manifests endpoint for: the digest, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, None, digest)

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)


def parse(text: str) -> Reference:
    """Parse and normalise an image reference, or raise InvalidArgument."""
    s = text.strip()
    if not s or s != text or any(c.isspace() for c in s):
        raise InvalidArgument(f"invalid image reference {text!r}")
    digest: str | None = None
    if "@" in s:
        s, digest = s.split("@", 1)
        try:
            dg.validate(digest)
        except InvalidArgument:
            raise InvalidArgument(f"invalid image reference {text!r}: bad digest") from None
    tag: str | None = None
    last = s.rsplit("/", 1)[-1]
    if ":" in last:
        s, tag = s.rsplit(":", 1)
        if not _TAG.match(tag):
            raise InvalidArgument(f"invalid image reference {text!r}: bad tag {tag!r}")
    domain, path = _split_domain(s, text)
    for comp in path.split("/"):
        if not _COMPONENT.match(comp):
            hint = " (repository names must be lowercase)" if comp.lower() != comp else ""
            raise InvalidArgument(f"invalid image reference {text!r}{hint}")
    if len(domain) + 1 + len(path) > _MAX_NAME:
        raise InvalidArgument(f"invalid image reference {text!r}: name too long")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(domain, path, tag, digest)


def _split_domain(s: str, text: str) -> tuple[str, str]:
    first, sep, rest = s.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")
                or first != first.lower()):
        if not _DOMAIN.match(first):
            raise InvalidArgument(f"invalid image reference {text!r}: bad domain {first!r}")
        domain, path = first, rest
    else:
        domain, path = DOCKER_DOMAIN, s
    if domain == "index.docker.io":
        domain = DOCKER_DOMAIN
    if domain == DOCKER_DOMAIN and "/" not in path:
        path = "library/" + path
    if not path:
        raise InvalidArgument(f"invalid image reference {text!r}: empty repository")
    return domain, path
