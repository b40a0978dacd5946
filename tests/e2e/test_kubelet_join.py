"""`kubelet-py join` against the real control plane: CSR, kubeconfig, Node, Lease."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelet_py.client import load_kubeconfig, new_clientset
from tests.harness.cluster import ControlPlane

pytestmark = pytest.mark.e2e


def kubectl_json(cluster: ControlPlane, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def wait(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Kubelet:
    def __init__(self, root: Path, name: str, args: list[str]) -> None:
        self.root = root
        self.name = name
        self.log = root / "kubelet.log"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubelet_py.cli", *args], stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"), env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def join_args(cluster: ControlPlane, root: Path, name: str, *, token: str | None = None,
              ca_hash: str | None = None) -> list[str]:
    return ["join", "--server", cluster.server, "--token", token or cluster.token,
            "--discovery-token-ca-cert-hash", ca_hash or cluster.ca_cert_hash,
            "--root-dir", str(root), "--hostname-override", name, "--node-ip", "127.0.0.1",
            "--address", "127.0.0.1", "--port", str(free_port()), "--healthz-port", "0",
            "--container-runtime-endpoint", f"unix://{root}/no-runtime.sock"]


@pytest.fixture
def node_name(control_plane: ControlPlane) -> Iterator[str]:
    name = f"kubelet-py-e2e-{secrets.token_hex(3)}"
    yield name
    control_plane.kubectl("delete", "node", name, "--ignore-not-found", "--wait=false",
                          check=False)
    control_plane.kubectl("delete", "lease", "-n", "kube-node-lease", name,
                          "--ignore-not-found", "--wait=false", check=False)


def test_join_registers_node_and_renews_lease(control_plane: ControlPlane,
                                              node_name: str, tmp_path: Path) -> None:
    kubelet = Kubelet(tmp_path, node_name, join_args(control_plane, tmp_path, node_name))
    try:
        node = wait(lambda: _get(control_plane, "node", node_name), "node registration")
        registered = time.monotonic() - kubelet.started
        kubeconfig = tmp_path / "kubeconfig"
        current = tmp_path / "pki" / "kubelet-client-current.pem"
        assert kubeconfig.exists() and current.is_symlink()
        assert (current.resolve().stat().st_mode & 0o777) == 0o600
        csrs = kubectl_json(control_plane, "get", "csr")["items"]
        mine = [c for c in csrs if c["spec"]["username"].startswith("system:bootstrap:")
                and "kube-apiserver-client-kubelet" in c["spec"]["signerName"]
                and c.get("status", {}).get("certificate")]
        assert mine, "no issued kube-apiserver-client-kubelet CSR from the bootstrap token"
        labels = node["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == node_name
        assert labels["kubernetes.io/os"] == "linux"
        status = node["status"]
        assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
        assert status["capacity"]["pods"] == "110"
        assert status["nodeInfo"]["bootID"]
        conds = {c["type"]: c for c in status["conditions"]}
        # No runtime is listening: the node must say so rather than claim Ready.
        assert conds["Ready"]["status"] == "False"
        assert "container runtime is down" in conds["Ready"]["message"]
        lease = wait(lambda: _get(control_plane, "lease", node_name, "-n", "kube-node-lease"),
                     "lease")
        assert lease["spec"]["leaseDurationSeconds"] == 40
        assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
        first = lease["spec"]["renewTime"]
        wait(lambda: _get(control_plane, "lease", node_name, "-n", "kube-node-lease")
             ["spec"]["renewTime"] != first, "lease renewal", timeout=30)
        # The same identity authenticates as the node with the written kubeconfig.
        who = subprocess.run([str(control_plane.tools / "kubectl"), f"--kubeconfig={kubeconfig}",
                              "auth", "whoami", "-o", "json"], capture_output=True, text=True,
                             check=True)
        assert json.loads(who.stdout)["status"]["userInfo"]["username"] == \
            f"system:node:{node_name}"
        # The typed ClientSet and the dynamic client work with the node's credentials.
        clientset = new_clientset(load_kubeconfig(kubeconfig))
        try:
            typed = clientset.core.read_node(node_name)
            assert typed.metadata.uid == node["metadata"]["uid"]
            leases = clientset.dynamic().resources.get(api_version="coordination.k8s.io/v1",
                                                       kind="Lease")
            dyn = leases.get(name=node_name, namespace="kube-node-lease")
            assert dyn.spec.holderIdentity == node_name
        finally:
            clientset.close()
        assert not clientset.pem_dir.exists()
        print(f"\nnode registered {registered:.2f}s after `kubelet-py join` started")
    finally:
        kubelet.stop()
        print(kubelet.output()[-3000:])


def test_restart_reuses_kubeconfig(control_plane: ControlPlane,
                                   node_name: str, tmp_path: Path) -> None:
    first = Kubelet(tmp_path, node_name, join_args(control_plane, tmp_path, node_name))
    try:
        wait(lambda: _get(control_plane, "node", node_name), "node registration")
    finally:
        first.stop()
    pem = (tmp_path / "pki" / "kubelet-client-current.pem").resolve()
    again = Kubelet(tmp_path, node_name, [
        "--kubeconfig", str(tmp_path / "kubeconfig"), "--root-dir", str(tmp_path),
        "--hostname-override", node_name, "--node-ip", "127.0.0.1", "--address", "127.0.0.1",
        "--port", str(free_port()), "--healthz-port", "0",
        "--container-runtime-endpoint", f"unix://{tmp_path}/no-runtime.sock"])
    try:
        lease = _get(control_plane, "lease", node_name, "-n", "kube-node-lease")
        # `_get` answers None when one kubectl call fails (a busy machine): poll on.
        wait(lambda: (got := _get(control_plane, "lease", node_name, "-n", "kube-node-lease"))
             and got["spec"]["renewTime"] != lease["spec"]["renewTime"], "lease renewal",
             timeout=30)
        assert (tmp_path / "pki" / "kubelet-client-current.pem").resolve() == pem
    finally:
        again.stop()


def test_wrong_ca_hash_refuses_to_join(control_plane: ControlPlane,
                                       tmp_path: Path) -> None:
    args = join_args(control_plane, tmp_path, "never", ca_hash="sha256:" + "0" * 64)
    done = subprocess.run([sys.executable, "-m", "kubelet_py.cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "refusing to join" in done.stderr
    assert not (tmp_path / "kubeconfig").exists()
    assert not (tmp_path / "pki").exists()


@pytest.mark.parametrize("kind", ["wrong-secret", "unknown-id"])
def test_bad_token_refuses_to_join(control_plane: ControlPlane,
                                   tmp_path: Path, kind: str) -> None:
    token_id, _, secret = control_plane.token.partition(".")
    bad = f"{token_id}.{'x' * 16}" if kind == "wrong-secret" else f"zzzzzz.{secret}"
    args = join_args(control_plane, tmp_path, "never", token=bad)
    done = subprocess.run([sys.executable, "-m", "kubelet_py.cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 1
    expected = "does not verify" if kind == "wrong-secret" else "not signed for token zzzzzz"
    assert expected in done.stderr
    assert not (tmp_path / "kubeconfig").exists()


def _get(cluster: ControlPlane, *args: str) -> Any:
    done = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_serving_certificate_from_approved_csr(control_plane: ControlPlane,
                                               node_name: str, tmp_path: Path) -> None:
    import ssl

    port = free_port()
    args = join_args(control_plane, tmp_path, node_name)
    args[args.index("--port") + 1] = str(port)
    kubelet = Kubelet(tmp_path, node_name, [*args, "--rotate-server-certificates"])
    try:
        def serving_csr() -> str | None:
            for csr in kubectl_json(control_plane, "get", "csr")["items"]:
                if csr["spec"]["signerName"] == "kubernetes.io/kubelet-serving" and \
                        csr["spec"]["username"] == f"system:node:{node_name}":
                    return str(csr["metadata"]["name"])
            return None

        name = wait(serving_csr, "kubelet-serving CSR", timeout=60)
        control_plane.kubectl("certificate", "approve", name)
        current = tmp_path / "pki" / "kubelet-server-current.pem"
        wait(current.exists, "serving certificate written", timeout=60)
        from cryptography import x509

        cert = x509.load_pem_x509_certificates(current.read_bytes())[0]
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert node_name in san.get_values_for_type(x509.DNSName)
        assert "127.0.0.1" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        # The running server switched to it: the handshake verifies against the cluster CA.
        ctx = ssl.create_default_context(cafile=str(control_plane.env.ca_cert))
        ctx.check_hostname = False

        def served() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                    ctx.wrap_socket(raw) as tls:
                return tls.getpeercert() is not None
        wait(lambda: _try(served), "TLS with the CA-signed serving certificate", timeout=60)
    finally:
        kubelet.stop()


def _try(check: Any) -> bool:
    import ssl

    try:
        return bool(check())
    except (ssl.SSLError, OSError):
        return False
