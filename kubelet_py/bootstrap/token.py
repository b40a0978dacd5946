"""Bootstrap tokens (`[a-z0-9]{6}.[a-z0-9]{16}`) and the detached JWS that signs cluster-info."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import re

from kubelet_py.errors import BootstrapError

_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")


@dataclasses.dataclass(frozen=True)
class BootstrapToken:
    id: str
    secret: str

    def __str__(self) -> str:
        return f"{self.id}.{self.secret}"

    @property
    def configmap_key(self) -> str:
        """The cluster-info key holding this token's signature."""
        return f"jws-kubeconfig-{self.id}"


def parse_token(text: str) -> BootstrapToken:
    match = _TOKEN.match(text.strip())
    if match is None:
        raise BootstrapError("the bootstrap token must look like abcdef.0123456789abcdef "
                             "(6 and 16 characters of [a-z0-9])")
    return BootstrapToken(id=match.group(1), secret=match.group(2))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_detached(payload: bytes, token: BootstrapToken) -> str:
    """A compact JWS with the payload detached (`header..signature`), HS256 with the secret."""
    header = b64url(json.dumps({"alg": "HS256", "kid": token.id},
                               separators=(",", ":")).encode())
    mac = hmac.new(token.secret.encode(), f"{header}.{b64url(payload)}".encode(), hashlib.sha256)
    return f"{header}..{b64url(mac.digest())}"


def verify_detached(jws: str, payload: bytes, token: BootstrapToken) -> None:
    """Raise BootstrapError unless `jws` is an HS256 detached signature of `payload`."""
    parts = jws.strip().split(".")
    if len(parts) != 3 or parts[1] != "":
        raise BootstrapError("cluster-info signature is not a detached JWS (header..signature)")
    header_b64, _, signature_b64 = parts
    try:
        header = json.loads(_unb64url(header_b64))
        signature = _unb64url(signature_b64)
    except (ValueError, TypeError) as exc:
        raise BootstrapError(f"cluster-info signature is malformed: {exc}") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise BootstrapError("cluster-info signature does not use HS256")
    if header.get("kid") not in (None, token.id):
        raise BootstrapError(f"cluster-info signature names token {header.get('kid')!r}, "
                             f"not {token.id!r}")
    expected = hmac.new(token.secret.encode(), f"{header_b64}.{b64url(payload)}".encode(),
                        hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise BootstrapError(f"cluster-info signature does not verify with token {token.id}: "
                             "wrong token secret, or the ConfigMap was tampered with")
