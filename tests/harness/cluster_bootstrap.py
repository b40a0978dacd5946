"""The objects kubeadm creates for node bootstrap: token, cluster-info, RBAC, kubelet-config.

Builders are pure (unit-tested); `create_all` posts them through an Endpoint.
"""
from __future__ import annotations

from typing import Any

import yaml

from tests.harness.cluster_api import Endpoint
from tests.harness.cluster_config import (
    BOOTSTRAP_GROUP,
    CLUSTER_DNS,
    CLUSTER_DOMAIN,
    KUBELET_CLIENT_USER,
    BootstrapToken,
)

RBAC = "rbac.authorization.k8s.io"
Obj = dict[str, Any]


def token_secret(token: BootstrapToken) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": f"bootstrap-token-{token.token_id}", "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "description": "kubelet-py local control plane: node bootstrap token",
            "token-id": token.token_id,
            "token-secret": token.secret,
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": BOOTSTRAP_GROUP,
        },
    }


def cluster_info(kubeconfig_yaml: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": kubeconfig_yaml}}


def kubelet_config() -> Obj:
    """The cluster-wide KubeletConfiguration a joining node reads (kubeadm's kubelet-config)."""
    config = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
              "clusterDomain": CLUSTER_DOMAIN, "clusterDNS": [CLUSTER_DNS],
              "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True}},
              "authorization": {"mode": "Webhook"}, "rotateCertificates": True}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kubelet-config", "namespace": "kube-system"},
            "data": {"kubelet": yaml.safe_dump(config, sort_keys=False)}}


def _subject(kind: str, name: str) -> Obj:
    subject: Obj = {"kind": kind, "name": name}
    if kind in ("User", "Group"):
        subject["apiGroup"] = RBAC
    return subject


def cluster_role_binding(name: str, role: str, *subjects: tuple[str, str]) -> Obj:
    return {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
            "subjects": [_subject(k, n) for k, n in subjects]}


def cluster_role(name: str, rules: list[Obj]) -> Obj:
    return {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole",
            "metadata": {"name": name}, "rules": rules}


def role_and_binding(name: str, namespace: str, rules: list[Obj],
                     *subjects: tuple[str, str]) -> tuple[Obj, Obj]:
    role = {"apiVersion": f"{RBAC}/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace}, "rules": rules}
    binding = {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
               "metadata": {"name": name, "namespace": namespace},
               "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
               "subjects": [_subject(k, n) for k, n in subjects]}
    return role, binding


def _get_configmap(name: str) -> list[Obj]:
    return [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [name],
             "verbs": ["get"]}]


def rbac_objects() -> list[tuple[str, Obj]]:
    """(collection path, object) for every RBAC object, in creation order."""
    bootstrappers = ("Group", BOOTSTRAP_GROUP)
    crb = f"/apis/{RBAC}/v1/clusterrolebindings"
    cr = f"/apis/{RBAC}/v1/clusterroles"
    csr_role = "system:certificates.k8s.io:certificatesigningrequests"
    info_role, info_binding = role_and_binding(
        "kubeadm:bootstrap-signer-clusterinfo", "kube-public", _get_configmap("cluster-info"),
        ("User", "system:anonymous"), bootstrappers)
    kcfg_role, kcfg_binding = role_and_binding(
        "kubeadm:kubelet-config", "kube-system", _get_configmap("kubelet-config"),
        ("Group", "system:nodes"), bootstrappers)
    return [
        (crb, cluster_role_binding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper",
                                   bootstrappers)),
        (crb, cluster_role_binding("kubeadm:node-autoapprove-bootstrap",
                                   f"{csr_role}:nodeclient", bootstrappers)),
        (crb, cluster_role_binding("kubeadm:node-autoapprove-certificate-rotation",
                                   f"{csr_role}:selfnodeclient", ("Group", "system:nodes"))),
        (cr, cluster_role("kubeadm:get-nodes", [{"apiGroups": [""], "resources": ["nodes"],
                                                 "verbs": ["get"]}])),
        (crb, cluster_role_binding("kubeadm:get-nodes", "kubeadm:get-nodes", bootstrappers)),
        (crb, cluster_role_binding("kube-apiserver-kubelet-api-admin",
                                   "system:kubelet-api-admin", ("User", KUBELET_CLIENT_USER))),
        (f"/apis/{RBAC}/v1/namespaces/kube-public/roles", info_role),
        (f"/apis/{RBAC}/v1/namespaces/kube-public/rolebindings", info_binding),
        (f"/apis/{RBAC}/v1/namespaces/kube-system/roles", kcfg_role),
        (f"/apis/{RBAC}/v1/namespaces/kube-system/rolebindings", kcfg_binding),
    ]


def create_all(api: Endpoint, *, token: BootstrapToken, cluster_info_kubeconfig: str) -> None:
    api.create("/api/v1/namespaces/kube-system/secrets", token_secret(token))
    api.create("/api/v1/namespaces/kube-public/configmaps",
               cluster_info(cluster_info_kubeconfig))
    api.create("/api/v1/namespaces/kube-system/configmaps", kubelet_config())
    for collection, obj in rbac_objects():
        api.create(collection, obj)


def signed_cluster_info(api: Endpoint, token: BootstrapToken) -> tuple[str, str] | None:
    """(kubeconfig, jws) of cluster-info once the bootstrapsigner has signed it, else None."""
    resp = api.get("/api/v1/namespaces/kube-public/configmaps/cluster-info")
    if resp.status != 200:
        return None
    data = resp.json().get("data", {})
    jws = data.get(f"jws-kubeconfig-{token.token_id}")
    return (data["kubeconfig"], jws) if jws else None
