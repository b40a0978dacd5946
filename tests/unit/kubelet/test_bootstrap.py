from __future__ import annotations

import base64
import datetime as dt
import random
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelet_py.bootstrap.certstore import CertPair, CertStore, is_valid
from kubelet_py.bootstrap.csr import (
    CLIENT_SIGNER,
    CLIENT_USAGES,
    CertRequest,
    build_csr_pem,
    csr_object,
    issued_certificate,
    new_key_pem,
)
from kubelet_py.bootstrap.discovery import ca_from_cluster_info
from kubelet_py.bootstrap.rotation import rotation_deadline
from kubelet_py.bootstrap.serving import ensure_self_signed
from kubelet_py.bootstrap.token import BootstrapToken, sign_detached
from kubelet_py.client.kubeconfig import load_kubeconfig, render_kubeconfig
from kubelet_py.errors import BootstrapError

from .test_cahash import CA_PEM

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TOKEN = BootstrapToken(id="abcdef", secret="0123456789abcdef")


def make_cert(key_pem: bytes, *, start: dt.datetime, days: int) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "system:node:n1")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_client_csr_subject_and_key() -> None:
    key_pem = new_key_pem()
    assert b"BEGIN EC PRIVATE KEY" in key_pem
    req = CertRequest(signer=CLIENT_SIGNER, usages=CLIENT_USAGES, node_name="n1")
    csr = x509.load_pem_x509_csr(build_csr_pem(req, key_pem))
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "system:node:n1"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == \
        "system:nodes"
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    body = csr_object(req, build_csr_pem(req, key_pem))
    assert body["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
    assert body["spec"]["usages"] == ["digital signature", "client auth"]


def test_serving_csr_has_sans() -> None:
    req = CertRequest(signer="kubernetes.io/kubelet-serving", usages=("server auth",),
                      node_name="n1", dns_names=("n1",), ip_addresses=("10.0.0.5",))
    csr = x509.load_pem_x509_csr(build_csr_pem(req, new_key_pem()))
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]


def test_issued_certificate_states() -> None:
    assert issued_certificate({"status": {}}) is None
    approved = {"status": {"conditions": [{"type": "Approved", "status": "True"}]}}
    assert issued_certificate(approved) is None
    cert = base64.b64encode(b"PEM").decode()
    assert issued_certificate({"status": {"certificate": cert}}) == b"PEM"
    denied = {"metadata": {"name": "csr-x"}, "status": {"conditions": [
        {"type": "Denied", "status": "True", "reason": "Policy", "message": "no"}]}}
    with pytest.raises(BootstrapError, match="csr-x was denied: Policy no"):
        issued_certificate(denied)


def test_cert_store_write_load_and_symlink(tmp_path: Path) -> None:
    store = CertStore(tmp_path, "kubelet-client")
    assert store.load() is None
    key = new_key_pem()
    pair = CertPair(cert_pem=make_cert(key, start=T0, days=365), key_pem=key)
    target = store.write(pair, now=T0)
    assert target.name == "kubelet-client-2026-01-01-00-00-00.pem"
    assert store.current_path.is_symlink()
    assert (target.stat().st_mode & 0o777) == 0o600
    loaded = store.load()
    assert loaded is not None and loaded.key_pem == key
    assert loaded.cert.serial_number == pair.cert.serial_number
    assert is_valid(loaded, now=T0 + dt.timedelta(days=1))
    assert not is_valid(loaded, now=T0 + dt.timedelta(days=400))
    key2 = new_key_pem()
    store.write(CertPair(make_cert(key2, start=T0, days=1), key2), now=T0 + dt.timedelta(hours=1))
    again = store.load()
    assert again is not None and again.key_pem == key2


def test_rotation_deadline_in_70_to_90_percent() -> None:
    key = new_key_pem()
    cert = x509.load_pem_x509_certificate(make_cert(key, start=T0, days=100))
    rng = random.Random(7)
    deadlines = [rotation_deadline(cert, rng=rng) for _ in range(200)]
    assert min(deadlines) >= T0 + dt.timedelta(days=70)
    assert max(deadlines) <= T0 + dt.timedelta(days=90)
    assert len(set(deadlines)) > 100  # jittered


def test_kubeconfig_round_trip(tmp_path: Path) -> None:
    pem = tmp_path / "kubelet-client-current.pem"
    key = new_key_pem()
    pem.write_bytes(make_cert(key, start=T0, days=1) + key)
    text = render_kubeconfig(server="https://127.0.0.1:6443", ca_pem=CA_PEM,
                             user="default-auth", cert_file=pem, key_file=pem)
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    creds = load_kubeconfig(path)
    assert creds.server == "https://127.0.0.1:6443"
    assert creds.ca_pem == CA_PEM
    assert creds.key_pem is not None and key in creds.key_pem
    ctx = creds.ssl_context()  # loads the pair: the files are a usable TLS identity
    assert ctx.verify_mode.name == "CERT_REQUIRED"


def cluster_info(token: BootstrapToken) -> dict[str, object]:
    kubeconfig = yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [
        {"name": "", "cluster": {"server": "https://127.0.0.1:6443",
                                 "certificate-authority-data":
                                     base64.b64encode(CA_PEM).decode()}}]})
    return {"data": {"kubeconfig": kubeconfig,
                     f"jws-kubeconfig-{token.id}": sign_detached(kubeconfig.encode(), token)}}


def test_cluster_info_verified_ca() -> None:
    assert ca_from_cluster_info(cluster_info(TOKEN), TOKEN) == CA_PEM


def test_cluster_info_unknown_token() -> None:
    other = BootstrapToken(id="zzzzzz", secret=TOKEN.secret)
    with pytest.raises(BootstrapError, match="not signed for token zzzzzz"):
        ca_from_cluster_info(cluster_info(TOKEN), other)


def test_cluster_info_tampered() -> None:
    info = cluster_info(TOKEN)
    data = info["data"]
    assert isinstance(data, dict)
    data["kubeconfig"] += "\n# evil"
    with pytest.raises(BootstrapError, match="does not verify"):
        ca_from_cluster_info(info, TOKEN)


def test_self_signed_serving_reused_while_valid(tmp_path: Path) -> None:
    crt, key = ensure_self_signed(tmp_path, hostname="n1", ips=("10.0.0.5",), now=T0)
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1"]
    assert (key.stat().st_mode & 0o777) == 0o600
    first = crt.read_bytes()
    ensure_self_signed(tmp_path, hostname="n1", ips=(), now=T0 + dt.timedelta(days=10))
    assert crt.read_bytes() == first
    ensure_self_signed(tmp_path, hostname="n1", ips=(), now=T0 + dt.timedelta(days=365))
    assert crt.read_bytes() != first
