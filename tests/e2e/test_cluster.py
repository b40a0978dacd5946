"""The local control plane: health, node bootstrap (token, CSR, cluster-info), lifecycle."""
from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness import cluster
from tests.harness.cluster import ControlPlane
from tests.harness.cluster_api import Endpoint
from tests.harness.cluster_config import COMPONENTS, BootstrapToken, ClusterError, interface_for
from tests.harness.cluster_proc import free_port, interface_exists, read_state, strays
from tests.harness.pki import ca_cert_hash, verify_detached_jws
from tests.harness.prereq import need_root, need_tool

pytestmark = pytest.mark.e2e

SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CSR_API = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


def _token_endpoint(cp: ControlPlane, token: str) -> Endpoint:
    return Endpoint(cp.env.ports.apiserver, ca=cp.env.ca_cert, token=token)


def _node_csr(name: str) -> tuple[ec.EllipticCurvePrivateKey, dict[str, Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                   x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{name}")]))
               .sign(key, hashes.SHA256()))
    pem = request.public_bytes(serialization.Encoding.PEM)
    body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": f"node-csr-{name}"},
            "spec": {"request": base64.b64encode(pem).decode(), "signerName": SIGNER,
                     "usages": ["digital signature", "client auth"]}}
    return key, body


def test_apiserver_readyz(control_plane: ControlPlane) -> None:
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    verbose = control_plane.kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "[+]etcd ok" in verbose and "readyz check passed" in verbose


@pytest.mark.parametrize("component", ["controller_manager", "scheduler"])
def test_component_healthz(control_plane: ControlPlane, component: str) -> None:
    """What `kubectl get cs` reports, asked of the component's own secure port."""
    port = control_plane.env.ports.as_dict()[component]
    # The serving cert is signed by the cluster CA: kubectl verifies it, no skip-verify.
    got = control_plane.kubectl(f"--server=https://127.0.0.1:{port}", "get", "--raw", "/healthz")
    assert got.stdout.strip() == "ok"


def test_bootstrap_token_csr_is_approved_and_signed(control_plane: ControlPlane,
                                                    tmp_path: Path) -> None:
    name = f"kpy-csr-{secrets.token_hex(3)}"
    api = _token_endpoint(control_plane, control_plane.token)
    key, body = _node_csr(name)
    created = api.request("POST", CSR_API, body)
    assert created.status == 201, created.body
    assert created.json()["spec"]["username"].startswith("system:bootstrap:")
    deadline = time.monotonic() + 60
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = api.get(f"{CSR_API}/node-csr-{name}").json().get("status", {})
        if status.get("certificate"):
            break
        time.sleep(0.1)
    approved = [c for c in status.get("conditions", []) if c["type"] == "Approved"]
    assert approved and approved[0]["status"] == "True", status
    assert status.get("certificate"), f"not signed within 60 s: {status}"
    cert = x509.load_pem_x509_certificate(base64.b64decode(status["certificate"]))
    ca = x509.load_pem_x509_certificate(control_plane.env.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        f"system:node:{name}"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.public_key() == key.public_key()
    # The issued certificate authenticates as the node.
    folder = tmp_path
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    node = Endpoint(control_plane.env.ports.apiserver, ca=control_plane.env.ca_cert,
                    client_cert=folder / "tls.crt", client_key=folder / "tls.key")
    review = node.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                          {"apiVersion": "authentication.k8s.io/v1",
                           "kind": "SelfSubjectReview"}).json()
    user = review["status"]["userInfo"]
    assert user["username"] == f"system:node:{name}"
    assert "system:nodes" in user["groups"]
    control_plane.kubectl("delete", "csr", f"node-csr-{name}")


def test_wrong_token_secret_is_refused(control_plane: ControlPlane) -> None:
    token = BootstrapToken.parse(control_plane.token)
    wrong = BootstrapToken(token.token_id, "0" * 16 if token.secret != "0" * 16 else "1" * 16)
    _, body = _node_csr(f"kpy-bad-{secrets.token_hex(3)}")
    assert _token_endpoint(control_plane, wrong.value).request("POST", CSR_API, body).status \
        == 401


def test_cluster_info_is_signed_for_the_token(control_plane: ControlPlane) -> None:
    token = BootstrapToken.parse(control_plane.token)
    # Discovery happens before the node has any credential: anonymous must be allowed.
    anonymous = Endpoint(control_plane.env.ports.apiserver, ca=control_plane.env.ca_cert)
    got = anonymous.get("/api/v1/namespaces/kube-public/configmaps/cluster-info")
    assert got.status == 200, got.body
    data = got.json()["data"]
    jws = data[f"jws-kubeconfig-{token.token_id}"]
    assert verify_detached_jws(jws, data["kubeconfig"], token_id=token.token_id,
                               token_secret=token.secret)
    assert not verify_detached_jws(jws, data["kubeconfig"], token_id=token.token_id,
                                   token_secret="x" * 16)
    info = yaml.safe_load(data["kubeconfig"])
    ca_pem = base64.b64decode(info["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca_cert_hash(ca_pem) == control_plane.ca_cert_hash
    assert info["clusters"][0]["cluster"]["server"] == control_plane.server
    env = (control_plane.layout.env_file).read_text()
    assert f"CA_CERT_HASH={control_plane.ca_cert_hash}\n" in env
    # Nothing else in kube-public or kube-system is open to anonymous.
    assert anonymous.get("/api/v1/namespaces/kube-system/secrets").status in (401, 403)


def test_service_range_advertise_address_and_nodeipam(control_plane: ControlPlane) -> None:
    svc = control_plane.kubectl("get", "service", "kubernetes", "-o",
                                "jsonpath={.spec.clusterIP}").stdout
    assert svc == "10.96.0.1"
    eps = control_plane.kubectl("get", "endpoints", "kubernetes", "-o",
                                "jsonpath={.subsets[0].addresses[0].ip}").stdout
    assert eps == control_plane.env.advertise_address
    assert interface_exists(interface_for(control_plane.layout.root)[0])
    name = f"kpy-ipam-{secrets.token_hex(3)}"
    control_plane.kubectl("create", "-f", "-", stdin=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
    try:
        cidr = ""
        deadline = time.monotonic() + 60
        while not cidr and time.monotonic() < deadline:
            cidr = control_plane.kubectl("get", "node", name, "-o",
                                         "jsonpath={.spec.podCIDR}").stdout
            time.sleep(0.2)
        assert cidr.startswith("10.244.") and cidr.endswith(".0/24"), cidr
    finally:
        control_plane.kubectl("delete", "node", name, "--wait=false")


def test_up_again_is_idempotent(control_plane: ControlPlane) -> None:
    again = cluster.up(control_plane.layout.root, tools=control_plane.tools, detach=False)
    assert again.already_running
    assert again.env == control_plane.env


def _tools() -> Path:
    need_root()
    for name in cluster.TOOLS:
        need_tool(name)
    return need_tool("kube-apiserver").parent


def test_stale_state_is_cleaned_and_down_leaves_nothing(tmp_path: Path) -> None:
    tools = _tools()
    root = tmp_path / "c"
    try:
        pinned = {"apiserver": free_port()}
        first = cluster.up(root, tools=tools, ports=pinned, detach=False)
        assert first.env.ports.apiserver == pinned["apiserver"]
        # Idempotent even with a pinned port, which the running cluster now holds.
        assert cluster.up(root, tools=tools, ports=pinned, detach=False).already_running
        state = read_state(first.layout.state_file)
        assert state is not None and set(state.pids) == set(COMPONENTS)
        os.kill(state.pids["kube-apiserver"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while cluster.status(root)[0] != "stale" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cluster.status(root)[0] == "stale"
        second = cluster.up(root, tools=tools, detach=False)
        assert not second.already_running
        assert second.token != first.token
        assert cluster.status(root)[0] == "running"
        print(f"\ncluster start: {first.start_seconds:.1f} s, "
              f"after stale cleanup: {second.start_seconds:.1f} s")
    finally:
        cluster.down(root)
    assert strays(root.resolve()) == []
    assert not interface_exists(interface_for(root.resolve())[0])
    assert sorted(p.name for p in root.iterdir()) == [".lock", "logs"]
    assert cluster.status(root)[0] == "absent"


def test_component_dying_at_start_is_reported_and_cleaned(tmp_path: Path) -> None:
    real = _tools()
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in cluster.TOOLS:
        (tools / name).symlink_to(real / name)
    (tools / "kube-apiserver").unlink()
    broken = tools / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'E0000 flag provided but not defined: --bogus' >&2\n"
                      "exit 3\n")
    broken.chmod(0o755)
    root = tmp_path / "c"
    with pytest.raises(ClusterError) as err:
        cluster.up(root, tools=tools, detach=False)
    assert "kube-apiserver exited with code 3" in str(err.value)
    assert "flag provided but not defined: --bogus" in str(err.value)
    assert strays(root.resolve()) == []
    assert not interface_exists(interface_for(root.resolve())[0])


def test_taken_port_and_missing_binary_are_clear(tmp_path: Path) -> None:
    tools = _tools()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ClusterError, match=f"port {port} .* already in use"):
            cluster.up(tmp_path / "c", tools=tools, ports={"apiserver": port})
    # Refused before anything was made: no state, no interface, no process.
    assert [p.name for p in (tmp_path / "c").iterdir()] == [".lock"]
    assert not interface_exists(interface_for((tmp_path / "c").resolve())[0])
    with pytest.raises(ClusterError, match="run `make tools`"):
        cluster.up(tmp_path / "d", tools=tmp_path)
    assert not (tmp_path / "d").exists()
