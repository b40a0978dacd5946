from __future__ import annotations

import pytest
from cryptography import x509

from kubelet_py.bootstrap.cahash import check_pins, parse_pins, spki_sha256
from kubelet_py.errors import BootstrapError

# A throwaway CA made with `openssl req -x509 -newkey ec ...`; its pin computed with kubeadm's
# documented pipeline: openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum
CA_PEM = b"""-----BEGIN CERTIFICATE-----
MIIBfzCCASWgAwIBAgIUUyjaHR9BjxG8vOou0xB5Uz7FMs4wCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKa3ViZXJuZXRlczAeFw0yNjExMjIxMDU5MTlaFw0zNjExMTkx
MDU5MTlaMBUxEzARBgNVBAMMCmt1YmVybmV0ZXMwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQzGqV84o1Yjh7Ti518BLTRMoYDdhNM5bjSzB3RdzvupJAqfp7fgjc/
f5pHKK2Xdwcusj+XQiagFboXdRrWV/pCo1MwUTAdBgNVHQ4EFgQU9KkpROQLrJeV
GyTiSnexYeUy0o0wHwYDVR0jBBgwFoAU9KkpROQLrJeVGyTiSnexYeUy0o0wDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEA0ljmDpEfhIf3vfe+w/h2
GqUBRH07LgSTSRcjFWUpmfMCIFc/R6xQAHx9BxVZJg6iZxTcN1SUlUGSITbZtGbS
FDD5
-----END CERTIFICATE-----
"""
PIN = "sha256:9b035e342d59aed2ec1dfbd7c863d566276dbb52dfde0d7014ac67d5bafc0a32"


def test_spki_hash_matches_openssl() -> None:
    assert spki_sha256(x509.load_pem_x509_certificate(CA_PEM)) == PIN


def test_matching_pin_accepted_case_insensitively() -> None:
    check_pins(CA_PEM, parse_pins([PIN.upper().replace("SHA256", "sha256")]))


def test_mismatch_refuses_to_join() -> None:
    with pytest.raises(BootstrapError, match="refusing to join"):
        check_pins(CA_PEM, parse_pins(["sha256:" + "0" * 64]))


def test_any_of_several_pins() -> None:
    check_pins(CA_PEM, parse_pins(["sha256:" + "1" * 64, PIN]))


@pytest.mark.parametrize("bad", ["9b03", "md5:" + "0" * 32, "sha256:" + "z" * 64, ""])
def test_malformed_pin(bad: str) -> None:
    with pytest.raises(BootstrapError, match="expected sha256"):
        parse_pins([bad])


def test_not_pem() -> None:
    with pytest.raises(BootstrapError):
        check_pins(b"garbage", parse_pins([PIN]))
