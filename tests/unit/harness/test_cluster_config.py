"""Control plane configuration: tokens, env file, interface names, component flags."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.harness.cluster_config import (
    BootstrapToken,
    ClusterEnv,
    Layout,
    Ports,
    component_args,
    interface_for,
)

PORTS = Ports(etcd=2379, etcd_peer=2380, apiserver=6443, controller_manager=10257,
              scheduler=10259)


def _env(root: Path) -> ClusterEnv:
    return ClusterEnv(kubeconfig=root / "admin.conf", server="https://127.0.0.1:6443",
                      token="abcdef.0123456789abcdef", ca_cert_hash="sha256:" + "a" * 64,
                      ca_cert=root / "pki/ca.crt", cluster_dir=root,
                      advertise_address="192.0.2.7", ports=PORTS)


def test_token_generate_parse_and_validate() -> None:
    token = BootstrapToken.generate()
    assert BootstrapToken.parse(token.value) == token
    assert BootstrapToken.generate() != token
    for bad in ("abcdef", "ABCDEF.0123456789abcdef", "abcde.0123456789abcdef",
                "abcdef.0123456789abcde", "abcdef-0123456789abcdef"):
        with pytest.raises(ValueError):
            BootstrapToken.parse(bad)


def test_env_file_round_trips_with_awkward_paths(tmp_path: Path) -> None:
    env = _env(tmp_path / "dir with spaces and 'quotes'")
    text = env.render()
    assert "SERVER=https://127.0.0.1:6443\n" in text
    assert "TOKEN=abcdef.0123456789abcdef\n" in text
    assert "CA_CERT_HASH=sha256:" in text
    assert "APISERVER_PORT=6443\n" in text and "SCHEDULER_PORT=10259\n" in text
    assert ClusterEnv.parse(text) == env


def test_env_file_is_valid_shell(tmp_path: Path) -> None:
    env = _env(tmp_path / "a b$c")
    (tmp_path / "env").write_text(env.render())
    out = subprocess.run(["sh", "-c", '. "$1" && printf %s "$KUBECONFIG"', "sh",
                          str(tmp_path / "env")], capture_output=True, text=True, check=True)
    assert out.stdout == str(env.kubeconfig)


def test_env_parse_rejects_incomplete_or_garbage() -> None:
    with pytest.raises(ValueError, match="lacks"):
        ClusterEnv.parse("SERVER=https://127.0.0.1:1\n")
    with pytest.raises(ValueError, match="not a shell assignment"):
        ClusterEnv.parse("echo hello\n")


def test_join_command_names_the_kubeadm_flags(tmp_path: Path) -> None:
    assert _env(tmp_path).join_command() == (
        "kubelet-py join --server https://127.0.0.1:6443 --token abcdef.0123456789abcdef "
        f"--discovery-token-ca-cert-hash sha256:{'a' * 64}")


def test_interface_is_stable_unique_and_short(tmp_path: Path) -> None:
    one, addr = interface_for(tmp_path / "one")
    assert interface_for(tmp_path / "one") == (one, addr)
    assert interface_for(tmp_path / "two")[0] != one
    assert len(one) <= 15 and one.startswith("kpy-")
    prefix, _, host = addr.rpartition(".")
    assert prefix == "192.0.2" and 1 <= int(host) <= 254


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in args)


def test_apiserver_flags(tmp_path: Path) -> None:
    flags = _flags(component_args("kube-apiserver", Layout(tmp_path), PORTS,
                                  advertise="192.0.2.7"))
    assert flags["authorization-mode"] == "Node,RBAC"
    assert flags["enable-admission-plugins"] == "NodeRestriction"
    assert flags["allow-privileged"] == "true"
    assert flags["enable-bootstrap-token-auth"] == "true"
    assert flags["service-cluster-ip-range"] == "10.96.0.0/12"
    assert flags["bind-address"] == "127.0.0.1"
    assert flags["advertise-address"] == "192.0.2.7"
    assert flags["secure-port"] == "6443"
    assert flags["etcd-servers"] == "http://127.0.0.1:2379"
    assert flags["kubelet-preferred-address-types"] == "InternalIP,Hostname"
    for name in ("kubelet-client-certificate", "kubelet-client-key", "client-ca-file",
                 "service-account-key-file", "service-account-signing-key-file",
                 "tls-cert-file", "tls-private-key-file"):
        assert flags[name].startswith(f"{tmp_path}/pki/"), name
    assert flags["service-account-issuer"].startswith("https://kubernetes.default.svc")


def test_controller_manager_and_scheduler_flags(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    cm = _flags(component_args("kube-controller-manager", layout, PORTS, advertise="x"))
    assert cm["controllers"] == "*,bootstrapsigner,tokencleaner"
    assert cm["allocate-node-cidrs"] == "true"
    assert cm["cluster-cidr"] == "10.244.0.0/16"
    assert cm["node-cidr-mask-size"] == "24"
    assert cm["cluster-signing-cert-file"] == str(layout.cert("ca"))
    assert cm["cluster-signing-key-file"] == str(layout.key("ca"))
    assert cm["use-service-account-credentials"] == "true"
    assert cm["secure-port"] == "10257" and cm["bind-address"] == "127.0.0.1"
    sched = _flags(component_args("kube-scheduler", layout, PORTS, advertise="x"))
    assert sched["secure-port"] == "10259" and sched["bind-address"] == "127.0.0.1"
    assert sched["kubeconfig"] == str(layout.kubeconfig("kube-scheduler"))
    etcd = _flags(component_args("etcd", layout, PORTS, advertise="x"))
    assert etcd["listen-client-urls"] == "http://127.0.0.1:2379"
    assert etcd["data-dir"] == str(layout.etcd_data)
    with pytest.raises(ValueError, match="unknown component"):
        component_args("kubelet", layout, PORTS, advertise="x")
