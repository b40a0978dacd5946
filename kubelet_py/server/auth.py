"""Who is calling, and may they: x509 client certificates (verified against the cluster CA
by TLS), bearer tokens via TokenReview, decisions via SubjectAccessReview, both cached."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Any

from kubelet_py.client.errors import ApiError, ApiUnavailable
from kubelet_py.client.rest import RestClient
from kubelet_py.clock import Clock

log = logging.getLogger(__name__)
TOKEN_TTL = 120.0
ALLOW_TTL = 300.0
DENY_TTL = 30.0


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


def user_from_peercert(cert: dict[str, Any] | None) -> User | None:
    """The identity in a verified client certificate (`ssl.getpeercert()` form)."""
    if not cert:
        return None
    name, groups = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                name = value
            elif key == "organizationName":
                groups.append(value)
    return User(name=name, groups=tuple(groups)) if name else None


def request_attributes(method: str, path: str) -> tuple[str, tuple[str, ...]]:
    """(verb, subresources to try in order) for a kubelet API request, as upstream maps
    them: /pods and /healthz have their own subresource, falling back to proxy."""
    verb = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update",
            "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())
    first = path.strip("/").split("/", 1)[0]
    own = {"stats": "stats", "metrics": "metrics", "logs": "log", "spec": "spec",
           "checkpoint": "checkpoint", "pods": "pods", "healthz": "healthz",
           "configz": "configz"}.get(first)
    if own in ("pods", "healthz", "configz"):
        return verb, (own, "proxy")
    return verb, (own or "proxy",)


class WebhookAuth:
    def __init__(self, rest: RestClient, *, node_name: str, clock: Clock) -> None:
        self._rest = rest
        self._node = node_name
        self._clock = clock
        self._tokens: dict[str, tuple[float, User | None]] = {}
        self._decisions: dict[tuple[str, str, str], tuple[float, bool]] = {}

    async def user_for_token(self, token: str) -> User | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock.monotonic()
        hit = self._tokens.get(key)
        if hit is not None and now - hit[0] < TOKEN_TTL:
            return hit[1]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token}}
        try:
            review = await self._rest.create(
                "/apis/authentication.k8s.io/v1/tokenreviews", body)
        except (ApiError, ApiUnavailable) as exc:
            log.warning("TokenReview failed: %s", exc)
            return None
        status = review.get("status") or {}
        user = None
        if status.get("authenticated"):
            info = status.get("user") or {}
            user = User(name=info.get("username", ""), groups=tuple(info.get("groups") or ()),
                        uid=info.get("uid", ""))
        self._tokens[key] = (now, user)
        return user

    async def allowed(self, user: User, verb: str, subresources: tuple[str, ...]) -> bool:
        for sub in subresources:
            if await self._allowed(user, verb, sub):
                return True
        return False

    async def _allowed(self, user: User, verb: str, subresource: str) -> bool:
        key = (f"{user.name}|{','.join(user.groups)}", verb, subresource)
        now = self._clock.monotonic()
        hit = self._decisions.get(key)
        if hit is not None and now - hit[0] < (ALLOW_TTL if hit[1] else DENY_TTL):
            return hit[1]
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": user.name, "groups": list(user.groups), "uid": user.uid,
                         "resourceAttributes": {"verb": verb, "resource": "nodes",
                                                "subresource": subresource,
                                                "name": self._node, "group": ""}}}
        try:
            review = await self._rest.create(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
        except (ApiError, ApiUnavailable) as exc:
            log.warning("SubjectAccessReview failed: %s", exc)
            return False
        ok = bool((review.get("status") or {}).get("allowed"))
        self._decisions[key] = (now, ok)
        return ok
