from __future__ import annotations

import base64
import datetime as dt
import random
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelet_py.bootstrap.certstore import CertPair, CertStore
from kubelet_py.bootstrap.csr import CertRequest, request_certificate
from kubelet_py.bootstrap.rotation import Rotator
from kubelet_py.errors import BootstrapError

from .fakes import ManualClock, run_async

CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])


def sign(csr_pem: bytes, *, start: dt.datetime, days: int) -> bytes:
    csr = x509.load_pem_x509_csr(csr_pem)
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(CA_NAME)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .sign(CA_KEY, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


class CsrApi:
    """Creates CSRs; the watch shows them approved then issued (or denied)."""

    def __init__(self, *, deny: bool = False, start: dt.datetime) -> None:
        self.deny = deny
        self.start = start
        self.created: list[dict[str, Any]] = []

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = {**body, "metadata": {"name": f"csr-{len(self.created)}", "resourceVersion": "1"}}
        self.created.append(obj)
        return obj

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> Any:
        return self.created[-1]

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[Any]:
        obj = self.created[-1]
        yield {"type": "MODIFIED", "object": {**obj, "status": {"conditions": [
            {"type": "Approved", "status": "True"}]}}}
        if self.deny:
            yield {"type": "MODIFIED", "object": {**obj, "status": {"conditions": [
                {"type": "Denied", "status": "True", "reason": "NoWay"}]}}}
            return
        pem = sign(base64.b64decode(obj["spec"]["request"]), start=self.start, days=10)
        yield {"type": "MODIFIED", "object": {**obj, "status": {
            "certificate": base64.b64encode(pem).decode()}}}


REQ = CertRequest(signer="kubernetes.io/kube-apiserver-client-kubelet",
                  usages=("digital signature", "client auth"), node_name="n1")


@run_async
async def test_request_certificate_waits_for_issuance() -> None:
    api = CsrApi(start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    issued = await request_certificate(api, REQ, timeout=30)  # type: ignore[arg-type]
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]


@run_async
async def test_denied_csr_is_an_error() -> None:
    api = CsrApi(deny=True, start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(BootstrapError, match="denied: NoWay"):
        await request_certificate(api, REQ, timeout=30)  # type: ignore[arg-type]


@run_async
async def test_rotator_renews_in_window_and_notifies(tmp_path: Path) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    clock = ManualClock(start)
    api = CsrApi(start=start)
    store = CertStore(tmp_path, "kubelet-client")
    first = await request_certificate(api, REQ, timeout=30)  # type: ignore[arg-type]
    store.write(CertPair(first.cert_pem, first.key_pem), now=start)
    seen: list[CertPair] = []

    async def rotated(pair: CertPair) -> None:
        seen.append(pair)

    rotator = Rotator(client=lambda: api, store=store, request=REQ, clock=clock,  # type: ignore[arg-type, return-value]
                      on_rotated=rotated, rng=random.Random(1))
    deadline = rotator.next_deadline()
    assert deadline is not None
    assert start + dt.timedelta(days=7) <= deadline <= start + dt.timedelta(days=9)
    assert rotator.next_deadline() == deadline  # jittered once per certificate
    clock.advance((deadline - start).total_seconds())
    pair = await rotator.rotate_once()
    assert seen == [pair]
    loaded = store.load()
    assert loaded is not None and loaded.key_pem == pair.key_pem != first.key_pem
