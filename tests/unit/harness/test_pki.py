"""The control plane's PKI: CAs, leaf certificates, kubeadm's CA hash, the cluster-info JWS."""
from __future__ import annotations

import datetime
import hashlib
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness import pki
from tests.harness.pki import LeafSpec

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def ca() -> pki.KeyPair:
    return pki.new_ca("kubernetes", now=NOW)


def test_ca_is_a_self_signed_ca(ca: pki.KeyPair) -> None:
    cert = ca.cert
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubernetes"
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca and basic.path_length == 0
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    cert.verify_directly_issued_by(cert)
    assert cert.not_valid_before_utc < NOW < cert.not_valid_after_utc


def test_server_leaf_has_sans_and_server_usage(ca: pki.KeyPair) -> None:
    leaf = pki.issue(ca, LeafSpec(common_name="kube-apiserver", dns_names=("kubernetes",),
                                  ip_addresses=("127.0.0.1", "10.96.0.1", "192.0.2.9"),
                                  server=True), now=NOW)
    cert = leaf.cert
    cert.verify_directly_issued_by(ca.cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["kubernetes"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address(a) for a in ("127.0.0.1", "10.96.0.1", "192.0.2.9")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.key.public_key() == cert.public_key()


def test_client_leaf_carries_groups_as_organizations(ca: pki.KeyPair) -> None:
    cert = pki.issue(ca, LeafSpec(common_name="kubernetes-admin",
                                  organizations=("system:masters",), client=True),
                     now=NOW).cert
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] \
        == ["system:masters"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_leaf_without_usage_is_refused(ca: pki.KeyPair) -> None:
    with pytest.raises(ValueError, match="server or client"):
        pki.issue(ca, LeafSpec(common_name="nothing"), now=NOW)


def test_service_account_key_pair_matches() -> None:
    private_pem, public_pem = pki.new_service_account_key()
    private = serialization.load_pem_private_key(private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    public = serialization.load_pem_public_key(public_pem)
    assert public == private.public_key()


def test_ca_cert_hash_is_sha256_of_spki(ca: pki.KeyPair) -> None:
    spki = ca.cert.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    got = pki.ca_cert_hash(ca.cert_pem)
    assert got == "sha256:" + hashlib.sha256(spki).hexdigest()
    # Not the hash of the whole certificate: kubeadm pins the key, not the cert.
    assert got != "sha256:" + hashlib.sha256(
        ca.cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert pki.ca_cert_hash(pki.new_ca("other", now=NOW).cert_pem) != got


def test_detached_jws_round_trip_and_tampering() -> None:
    payload = "apiVersion: v1\nkind: Config\n"
    jws = pki.detached_jws(payload, token_id="abcdef", token_secret="0123456789abcdef")
    header, empty, signature = jws.split(".")
    assert empty == "" and header and signature
    ok = {"token_id": "abcdef", "token_secret": "0123456789abcdef"}
    assert pki.verify_detached_jws(jws, payload, **ok)
    assert not pki.verify_detached_jws(jws, payload + " ", **ok)
    assert not pki.verify_detached_jws(jws, payload, token_id="abcdef",
                                       token_secret="0123456789abcdee")
    assert not pki.verify_detached_jws(jws, payload, token_id="abcdeg",
                                       token_secret="0123456789abcdef")
    assert not pki.verify_detached_jws(jws.replace("..", ".eA."), payload, **ok)
    assert not pki.verify_detached_jws("garbage", payload, **ok)
    assert not pki.verify_detached_jws("!!..!!", payload, **ok)
