"""Registry credentials and challenges.

Credentials come from a CRI-like AuthConfig (username/password, a base64 `auth`, an
identity (refresh) token, or a ready registry token) or from a docker `config.json`
(`auths.<host>.auth`). Challenges are parsed from `WWW-Authenticate` (Basic or Bearer with
realm/service/scope) per RFC 7235's auth-param syntax.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from pathlib import Path

from engine.errors import InvalidArgument


@dataclasses.dataclass(frozen=True)
class AuthConfig:
    username: str = ""
    password: str = ""
    auth: str = ""  # base64("user:password")
    identity_token: str = ""
    registry_token: str = ""

    def basic(self) -> tuple[str, str] | None:
        if self.username or self.password:
            return self.username, self.password
        if self.auth:
            try:
                user, _, pw = base64.b64decode(self.auth, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidArgument(
                    "auth config: `auth` is not base64 of user:password") from None
            return user, pw
        return None

    def empty(self) -> bool:
        return not (self.basic() or self.identity_token or self.registry_token)


@dataclasses.dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str]


_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate header (one or more challenges)."""
    out: list[Challenge] = []
    pos = 0
    header = header.strip()
    while pos < len(header):
        m = re.compile(r"\s*([A-Za-z]+)\s*").match(header, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            p = _PARAM.match(header, pos)
            if not p:
                break
            quoted, bare = p.group(2), p.group(3)
            value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
            params[p.group(1).lower()] = value
            pos = p.end()
        out.append(Challenge(scheme, params))
    return out


def from_docker_config(path: Path, registry: str) -> AuthConfig | None:
    """The credentials for `registry` in a docker config.json, if any."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise InvalidArgument(f"docker config {path}: {exc}") from None
    auths = doc.get("auths", {}) if isinstance(doc, dict) else {}
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == "docker.io":
        keys += ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"]
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, dict):
            return AuthConfig(
                username=str(entry.get("username", "")), password=str(entry.get("password", "")),
                auth=str(entry.get("auth", "")),
                identity_token=str(entry.get("identitytoken", "")),
                registry_token=str(entry.get("registrytoken", "")))
    return None
