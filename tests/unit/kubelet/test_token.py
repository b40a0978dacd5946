from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from kubelet_py.bootstrap.token import BootstrapToken, parse_token, sign_detached, verify_detached
from kubelet_py.errors import BootstrapError

TOKEN = BootstrapToken(id="abcdef", secret="0123456789abcdef")
PAYLOAD = b"apiVersion: v1\nkind: Config\n"
# Computed once with openssl: printf '%s' "<header>.<b64url(payload)>" |
#   openssl dgst -sha256 -hmac 0123456789abcdef -binary | base64 (url-safe, unpadded)
KNOWN_VECTOR = ("eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9.."
                "vH_kT4yiol-nrAWgjfCYqvum5wsKETXe0S7OOp1VgnE")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _reference(payload: bytes, token: BootstrapToken) -> str:
    header = _b64(b'{"alg":"HS256","kid":"' + token.id.encode() + b'"}')
    mac = hmac.new(token.secret.encode(), f"{header}.{_b64(payload)}".encode(), hashlib.sha256)
    return f"{header}..{_b64(mac.digest())}"


def test_parse_token() -> None:
    assert parse_token("abcdef.0123456789abcdef") == TOKEN
    for bad in ("abcdef", "ABCDEF.0123456789abcdef", "abcde.0123456789abcdef",
                "abcdef.0123456789abcde", "abcdef:0123456789abcdef"):
        with pytest.raises(BootstrapError):
            parse_token(bad)


def test_sign_matches_independent_reference() -> None:
    assert sign_detached(PAYLOAD, TOKEN) == _reference(PAYLOAD, TOKEN)


def test_known_vector() -> None:
    verify_detached(KNOWN_VECTOR, PAYLOAD, TOKEN)


def test_verify_accepts_own_signature() -> None:
    verify_detached(sign_detached(PAYLOAD, TOKEN), PAYLOAD, TOKEN)


def test_wrong_secret_rejected() -> None:
    other = BootstrapToken(id="abcdef", secret="ffffffffffffffff")
    with pytest.raises(BootstrapError, match="does not verify"):
        verify_detached(sign_detached(PAYLOAD, TOKEN), PAYLOAD, other)


def test_tampered_payload_rejected() -> None:
    with pytest.raises(BootstrapError, match="does not verify"):
        verify_detached(sign_detached(PAYLOAD, TOKEN), PAYLOAD + b"x", TOKEN)


def test_attached_payload_rejected() -> None:
    header, _, sig = sign_detached(PAYLOAD, TOKEN).split(".")
    with pytest.raises(BootstrapError, match="detached"):
        verify_detached(f"{header}.{_b64(PAYLOAD)}.{sig}", PAYLOAD, TOKEN)


def test_other_algorithm_rejected() -> None:
    _, _, sig = sign_detached(PAYLOAD, TOKEN).split(".")
    none_header = _b64(b'{"alg":"none","kid":"abcdef"}')
    with pytest.raises(BootstrapError, match="HS256"):
        verify_detached(f"{none_header}..{sig}", PAYLOAD, TOKEN)


def test_other_kid_rejected() -> None:
    other = BootstrapToken(id="zzzzzz", secret=TOKEN.secret)
    with pytest.raises(BootstrapError, match="names token"):
        verify_detached(sign_detached(PAYLOAD, other), PAYLOAD, TOKEN)
