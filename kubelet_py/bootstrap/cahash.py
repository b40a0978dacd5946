"""CA pinning: `sha256:<hex>` of a certificate's DER SubjectPublicKeyInfo (as kubeadm)."""
from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubelet_py.errors import BootstrapError

_PIN = re.compile(r"^sha256:([0-9a-f]{64})$")


def spki_sha256(cert: x509.Certificate) -> str:
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def parse_pins(texts: list[str]) -> frozenset[str]:
    pins = set()
    for text in texts:
        value = text.strip().lower()
        if _PIN.match(value) is None:
            raise BootstrapError(f"--discovery-token-ca-cert-hash {text!r}: expected "
                                 "sha256:<64 hex digits>")
        pins.add(value)
    return frozenset(pins)


def load_certs(pem: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise BootstrapError(f"cluster CA is not PEM: {exc}") from exc
    if not certs:
        raise BootstrapError("cluster-info holds no CA certificate")
    return certs


def check_pins(ca_pem: bytes, pins: frozenset[str]) -> None:
    """Raise unless one of the CA certificates matches one of the pins."""
    hashes = {spki_sha256(c) for c in load_certs(ca_pem)}
    if not hashes & pins:
        raise BootstrapError(
            "refusing to join: the cluster CA's public key hash "
            f"{', '.join(sorted(hashes))} matches no --discovery-token-ca-cert-hash "
            f"({', '.join(sorted(pins))})")
