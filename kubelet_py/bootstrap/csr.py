"""CertificateSigningRequests: build one, submit it, wait for approval and the certificate."""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import ipaddress
import logging
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelet_py.client.errors import ApiError, ApiUnavailable
from kubelet_py.client.rest import RestClient
from kubelet_py.errors import BootstrapError

log = logging.getLogger(__name__)

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
SERVING_SIGNER = "kubernetes.io/kubelet-serving"
CLIENT_USAGES = ("digital signature", "client auth")
SERVING_USAGES = ("digital signature", "server auth")


@dataclasses.dataclass(frozen=True)
class CertRequest:
    signer: str
    usages: tuple[str, ...]
    node_name: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class IssuedCert:
    cert_pem: bytes
    key_pem: bytes


def new_key_pem() -> bytes:
    """An ECDSA P-256 private key in SEC1 PEM, as the upstream kubelet generates."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def build_csr_pem(request: CertRequest, key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BootstrapError("the kubelet key must be an ECDSA key")
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{request.node_name}"),
    ]))
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in request.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in request.ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_object(request: CertRequest, csr_pem: bytes) -> dict[str, Any]:
    prefix = "csr-" if request.signer == CLIENT_SIGNER else "csr-serving-"
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": prefix},
        "spec": {
            "request": base64.b64encode(csr_pem).decode(),
            "signerName": request.signer,
            "usages": list(request.usages),
        },
    }


def issued_certificate(csr: dict[str, Any]) -> bytes | None:
    """The certificate once issued; raise on Denied/Failed; None while pending."""
    status = csr.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Denied", "Failed") and cond.get("status", "True") == "True":
            name = (csr.get("metadata") or {}).get("name")
            raise BootstrapError(f"CSR {name} was {cond['type'].lower()}: "
                                 f"{cond.get('reason', '')} {cond.get('message', '')}".strip())
    cert = status.get("certificate")
    return base64.b64decode(cert) if cert else None


async def request_certificate(client: RestClient, request: CertRequest, *,
                              timeout: float = 900.0) -> IssuedCert:
    """Submit a CSR and wait (watching it) until a certificate is issued."""
    key_pem = new_key_pem()
    body = csr_object(request, build_csr_pem(request, key_pem))
    try:
        created = await client.create(CSR_PATH, body)
    except ApiError as exc:
        raise BootstrapError(f"cannot create a CSR for signer {request.signer}: {exc}") from exc
    name = created["metadata"]["name"]
    log.info("CSR %s submitted (signer %s); waiting for approval", name, request.signer)
    try:
        cert = await asyncio.wait_for(_wait_issued(client, created), timeout)
    except TimeoutError as exc:
        raise BootstrapError(f"CSR {name} was not approved and issued within "
                             f"{timeout:.0f}s") from exc
    log.info("CSR %s issued", name)
    return IssuedCert(cert_pem=cert, key_pem=key_pem)


async def _wait_issued(client: RestClient, created: dict[str, Any]) -> bytes:
    name = created["metadata"]["name"]
    rv = created["metadata"].get("resourceVersion", "")
    params = {"fieldSelector": f"metadata.name={name}", "allowWatchBookmarks": "true",
              "timeoutSeconds": "60"}
    current = created
    while True:
        cert = issued_certificate(current)
        if cert is not None:
            return cert
        try:
            async for event in client.watch(CSR_PATH, {**params, "resourceVersion": rv}):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise ApiError.from_status(int(obj.get("code") or 500), obj)
                rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                if event.get("type") in ("ADDED", "MODIFIED"):
                    current = obj
                    if issued_certificate(current) is not None:
                        break
            else:
                current = await client.get(f"{CSR_PATH}/{name}")
        except (ApiError, ApiUnavailable) as exc:
            log.warning("watching CSR %s: %s; re-reading", name, exc)
            await asyncio.sleep(1.0)
            current = await client.get(f"{CSR_PATH}/{name}")
            rv = current["metadata"].get("resourceVersion", "")
