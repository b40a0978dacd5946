"""On-disk certificate pairs as the kubelet keeps them: `<prefix>-<time>.pem` + `-current`."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
from pathlib import Path

from cryptography import x509

from kubelet_py.client.kubeconfig import write_private

CLIENT_PREFIX = "kubelet-client"
SERVER_PREFIX = "kubelet-server"


@dataclasses.dataclass(frozen=True)
class CertPair:
    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.cert_pem)[0]


class CertStore:
    """A pair file (certificate chain then key, mode 0600) behind a `-current` symlink."""

    def __init__(self, cert_dir: Path, prefix: str) -> None:
        self.cert_dir = cert_dir
        self.prefix = prefix

    @property
    def current_path(self) -> Path:
        return self.cert_dir / f"{self.prefix}-current.pem"

    def load(self) -> CertPair | None:
        try:
            data = self.current_path.read_bytes()
        except FileNotFoundError:
            return None
        marker = data.find(b"-----BEGIN", data.rfind(b"-----END CERTIFICATE-----"))
        if marker < 0:
            return None
        return CertPair(cert_pem=data[:marker], key_pem=data[marker:])

    def write(self, pair: CertPair, *, now: dt.datetime) -> Path:
        stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%d-%H-%M-%S")
        target = self.cert_dir / f"{self.prefix}-{stamp}.pem"
        cert = pair.cert_pem if pair.cert_pem.endswith(b"\n") else pair.cert_pem + b"\n"
        write_private(target, cert + pair.key_pem)
        link = self.cert_dir / f".{self.prefix}-current.link"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        os.symlink(target.name, link)
        os.replace(link, self.current_path)
        return target


def is_valid(pair: CertPair | None, *, now: dt.datetime) -> bool:
    if pair is None:
        return False
    try:
        cert = pair.cert
    except ValueError:
        return False
    return cert.not_valid_before_utc <= now < cert.not_valid_after_utc
