"""Key material for the TLS + basic-auth registry: a private CA, a serving certificate for
127.0.0.1/localhost signed by it, and an htpasswd file with one bcrypt entry."""
from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

USERNAME = "kubelet-py"


@dataclass(frozen=True)
class TlsMaterial:
    ca_cert: Path
    cert: Path
    key: Path
    htpasswd: Path
    username: str
    password: str


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kubelet-py tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def make_tls(directory: Path, *, days: int = 30) -> TlsMaterial:
    """Create (or reuse, if all files exist) the CA, serving cert and htpasswd in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = TlsMaterial(ca_cert=directory / "ca.crt", cert=directory / "registry.crt",
                        key=directory / "registry.key", htpasswd=directory / "htpasswd",
                        username=USERNAME, password="")
    password_file = directory / "password"
    existing = [paths.ca_cert, paths.cert, paths.key, paths.htpasswd, password_file]
    if all(p.exists() for p in existing) and _still_valid(paths.cert):
        return _with_password(paths, password_file.read_text().strip())

    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("kubelet-py test registry CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(not_before).not_valid_after(not_after)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    password = secrets.token_urlsafe(18)
    # The lowest bcrypt cost: the registry checks the hash on every request, and this is a
    # throwaway test credential on loopback.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    _write(paths.ca_cert, ca.public_bytes(serialization.Encoding.PEM))
    _write(paths.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write(paths.key, _pem_key(key), 0o600)
    _write(paths.htpasswd, f"{USERNAME}:{hashed}\n".encode(), 0o600)
    _write(password_file, password.encode() + b"\n", 0o600)
    return _with_password(paths, password)


def _still_valid(cert_path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    remaining = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return remaining > datetime.timedelta(days=1)


def _with_password(paths: TlsMaterial, password: str) -> TlsMaterial:
    return TlsMaterial(ca_cert=paths.ca_cert, cert=paths.cert, key=paths.key,
                       htpasswd=paths.htpasswd, username=paths.username, password=password)
