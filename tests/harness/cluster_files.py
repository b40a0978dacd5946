"""Writes a cluster's PKI and kubeconfigs under its directory (kubeadm's names and subjects)."""
from __future__ import annotations

import base64
import datetime
import os
from pathlib import Path
from typing import Any

import yaml

from tests.harness import pki
from tests.harness.cluster_config import (
    FRONT_PROXY_CLIENT,
    KUBELET_CLIENT_USER,
    SERVICE_IP,
    Layout,
)
from tests.harness.pki import KeyPair, LeafSpec

# (file stem, common name, organizations) of the client certificates in kubeconfigs.
KUBECONFIG_USERS = (
    ("admin", "kubernetes-admin", ("system:masters",)),
    ("kube-controller-manager", "system:kube-controller-manager", ()),
    ("kube-scheduler", "system:kube-scheduler", ()),
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(*, server: str, ca_pem: bytes, user: str | None = None,
               pair: KeyPair | None = None, cluster_name: str = "kubernetes") -> dict[str, Any]:
    """A kubeconfig document; without a user it is the anonymous `cluster-info` form."""
    cluster = {"name": cluster_name,
               "cluster": {"certificate-authority-data": _b64(ca_pem), "server": server}}
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "preferences": {},
                           "clusters": [cluster]}
    if user is None or pair is None:
        doc.update({"contexts": [], "current-context": "", "users": []})
        return doc
    context = f"{user}@{cluster_name}"
    doc.update({
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": context,
        "users": [{"name": user, "user": {"client-certificate-data": _b64(pair.cert_pem),
                                          "client-key-data": _b64(pair.key_pem)}}],
    })
    return doc


def dump_kubeconfig(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _save(layout: Layout, name: str, pair: KeyPair) -> None:
    _write(layout.cert(name), pair.cert_pem)
    _write(layout.key(name), pair.key_pem, private=True)


def write_pki(layout: Layout, *, advertise: str, now: datetime.datetime) -> KeyPair:
    """Every certificate and key the control plane uses; returns the cluster CA."""
    ca = pki.new_ca("kubernetes", now=now)
    front_proxy_ca = pki.new_ca("front-proxy-ca", now=now)
    _save(layout, "ca", ca)
    _save(layout, "front-proxy-ca", front_proxy_ca)
    local = LeafSpec(common_name="", dns_names=("localhost",), ip_addresses=("127.0.0.1",),
                     server=True)
    leaves = {
        "apiserver": (ca, LeafSpec(
            common_name="kube-apiserver",
            dns_names=("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local", "localhost"),
            ip_addresses=("127.0.0.1", SERVICE_IP, advertise), server=True)),
        "apiserver-kubelet-client": (ca, LeafSpec(common_name=KUBELET_CLIENT_USER,
                                                  client=True)),
        "front-proxy-client": (front_proxy_ca, LeafSpec(common_name=FRONT_PROXY_CLIENT,
                                                        client=True)),
        # Serving certs of the controller manager and scheduler, so health checks verify.
        "kube-controller-manager": (ca, LeafSpec(
            common_name="kube-controller-manager", dns_names=local.dns_names,
            ip_addresses=local.ip_addresses, server=True)),
        "kube-scheduler": (ca, LeafSpec(
            common_name="kube-scheduler", dns_names=local.dns_names,
            ip_addresses=local.ip_addresses, server=True)),
    }
    for name, (issuer, spec) in leaves.items():
        _save(layout, name, pki.issue(issuer, spec, now=now))
    sa_private, sa_public = pki.new_service_account_key()
    _write(layout.key("sa"), sa_private, private=True)
    _write(layout.pki / "sa.pub", sa_public)
    return ca


def write_kubeconfigs(layout: Layout, *, ca: KeyPair, server: str,
                      now: datetime.datetime) -> None:
    """admin.conf (system:masters), kube-controller-manager.conf, kube-scheduler.conf."""
    for stem, common_name, orgs in KUBECONFIG_USERS:
        pair = pki.issue(ca, LeafSpec(common_name=common_name, organizations=orgs,
                                      client=True), now=now)
        if stem == "admin":
            _save(layout, "admin", pair)
        doc = kubeconfig(server=server, ca_pem=ca.cert_pem, user=common_name, pair=pair)
        _write(layout.kubeconfig(stem), dump_kubeconfig(doc).encode(), private=True)


def write_text(path: Path, text: str) -> None:
    _write(path, text.encode())
