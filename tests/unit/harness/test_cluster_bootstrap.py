"""The kubeadm-like bootstrap objects and the files written under a cluster directory."""
from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from tests.harness import cluster_bootstrap as boot
from tests.harness import cluster_files
from tests.harness.cluster_config import BOOTSTRAP_GROUP, BootstrapToken, Layout

TOKEN = BootstrapToken("abcdef", "0123456789abcdef")
NOW = datetime.datetime.now(datetime.UTC)


def test_token_secret_is_a_bootstrap_token() -> None:
    secret = boot.token_secret(TOKEN)
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    assert secret["metadata"] == {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}
    data = secret["stringData"]
    assert (data["token-id"], data["token-secret"]) == ("abcdef", "0123456789abcdef")
    assert data["usage-bootstrap-authentication"] == "true"
    assert data["usage-bootstrap-signing"] == "true"
    assert data["auth-extra-groups"] == BOOTSTRAP_GROUP
    assert "expiration" not in data


def _bindings() -> dict[str, Any]:
    return {obj["metadata"]["name"] + "/" + obj["kind"]: obj for _, obj in boot.rbac_objects()}


def test_rbac_lets_bootstrappers_request_and_autoapprove() -> None:
    objs = _bindings()
    group = {"kind": "Group", "name": BOOTSTRAP_GROUP, "apiGroup": "rbac.authorization.k8s.io"}
    for name, role in (
            ("kubeadm:kubelet-bootstrap", "system:node-bootstrapper"),
            ("kubeadm:node-autoapprove-bootstrap",
             "system:certificates.k8s.io:certificatesigningrequests:nodeclient"),
            ("kubeadm:get-nodes", "kubeadm:get-nodes")):
        binding = objs[f"{name}/ClusterRoleBinding"]
        assert binding["roleRef"]["name"] == role
        assert binding["subjects"] == [group]
    rotation = objs["kubeadm:node-autoapprove-certificate-rotation/ClusterRoleBinding"]
    assert rotation["roleRef"]["name"].endswith(":selfnodeclient")
    assert rotation["subjects"][0]["name"] == "system:nodes"
    kubelet_api = objs["kube-apiserver-kubelet-api-admin/ClusterRoleBinding"]
    assert kubelet_api["roleRef"]["name"] == "system:kubelet-api-admin"
    assert kubelet_api["subjects"][0]["name"] == "kube-apiserver-kubelet-client"


def test_cluster_info_readable_anonymously_and_nothing_more() -> None:
    objs = _bindings()
    role = objs["kubeadm:bootstrap-signer-clusterinfo/Role"]
    assert role["metadata"]["namespace"] == "kube-public"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
                              "resourceNames": ["cluster-info"], "verbs": ["get"]}]
    subjects = objs["kubeadm:bootstrap-signer-clusterinfo/RoleBinding"]["subjects"]
    assert {"kind": "User", "name": "system:anonymous",
            "apiGroup": "rbac.authorization.k8s.io"} in subjects


def test_written_pki_and_kubeconfigs(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    ca = cluster_files.write_pki(layout, advertise="192.0.2.5", now=NOW)
    cluster_files.write_kubeconfigs(layout, ca=ca, server="https://127.0.0.1:6443", now=NOW)
    assert layout.cert("ca").read_bytes() == ca.cert_pem
    for name in ("ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca",
                 "front-proxy-client", "sa", "admin"):
        assert layout.key(name).stat().st_mode & 0o777 == 0o600, name
    api = x509.load_pem_x509_certificate(layout.cert("apiserver").read_bytes())
    api.verify_directly_issued_by(ca.cert)
    san = api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1", "10.96.0.1", "192.0.2.5"}
    assert "kubernetes.default.svc.cluster.local" in san.get_values_for_type(x509.DNSName)
    admin = yaml.safe_load(layout.admin_kubeconfig.read_text())
    assert admin["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    user_cert = x509.load_pem_x509_certificate(
        base64.b64decode(admin["users"][0]["user"]["client-certificate-data"]))
    assert user_cert.subject.rfc4514_string() == "CN=kubernetes-admin,O=system:masters"
    for component in ("kube-controller-manager", "kube-scheduler"):
        doc = yaml.safe_load(layout.kubeconfig(component).read_text())
        assert doc["users"][0]["name"] == f"system:{component}"


def test_cluster_info_kubeconfig_has_no_credentials() -> None:
    doc = cluster_files.kubeconfig(server="https://127.0.0.1:1", ca_pem=b"PEM", cluster_name="")
    assert doc["users"] == [] and doc["contexts"] == []
    assert doc["clusters"] == [{"name": "", "cluster": {
        "certificate-authority-data": base64.b64encode(b"PEM").decode(),
        "server": "https://127.0.0.1:1"}}]
