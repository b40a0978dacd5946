"""The kubelet's serving certificate: self-signed by default (kubelet.crt / kubelet.key)."""
from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Awaitable, Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelet_py.bootstrap.certstore import SERVER_PREFIX, CertPair, CertStore
from kubelet_py.bootstrap.csr import SERVING_SIGNER, SERVING_USAGES, CertRequest, new_key_pem
from kubelet_py.bootstrap.rotation import Rotator
from kubelet_py.client.kubeconfig import write_private
from kubelet_py.client.rest import RestClient
from kubelet_py.clock import Clock

SELF_SIGNED_LIFETIME = dt.timedelta(days=365)


def self_signed_serving(*, hostname: str, ips: tuple[str, ...], now: dt.datetime) -> CertPair:
    key_pem = new_key_pem()
    key = serialization.load_pem_private_key(key_pem, password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                         f"{hostname}@{int(now.timestamp())}")])
    sans: list[x509.GeneralName] = [x509.DNSName(hostname)]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + SELF_SIGNED_LIFETIME)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    return CertPair(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=key_pem)


def ensure_self_signed(cert_dir: Path, *, hostname: str, ips: tuple[str, ...],
                       now: dt.datetime) -> tuple[Path, Path]:
    """Reuse kubelet.crt/kubelet.key while valid, else write a fresh self-signed pair."""
    crt, key = cert_dir / "kubelet.crt", cert_dir / "kubelet.key"
    if crt.exists() and key.exists():
        try:
            cert = x509.load_pem_x509_certificate(crt.read_bytes())
            if cert.not_valid_after_utc > now + dt.timedelta(days=1):
                return crt, key
        except ValueError:
            pass
    pair = self_signed_serving(hostname=hostname, ips=ips, now=now)
    write_private(key, pair.key_pem)
    write_private(crt, pair.cert_pem)
    return crt, key


def serving_rotator(client: Callable[[], RestClient], *, cert_dir: Path, node_name: str,
                    ips: tuple[str, ...], clock: Clock,
                    on_rotated: Callable[[CertPair], Awaitable[None]] | None = None) -> Rotator:
    """`--rotate-server-certificates`: a kubelet-serving CSR, renewed like the client one."""
    request = CertRequest(signer=SERVING_SIGNER, usages=SERVING_USAGES, node_name=node_name,
                          dns_names=(node_name,), ip_addresses=ips)
    return Rotator(client=client, store=CertStore(cert_dir, SERVER_PREFIX), request=request,
                   clock=clock, on_rotated=on_rotated)
