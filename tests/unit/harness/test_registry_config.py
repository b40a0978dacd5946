"""Registry configuration, key material and the mirror map, without starting a registry."""
from __future__ import annotations

import base64
import json
import os
import ssl
import tomllib
from pathlib import Path

import bcrypt
import pytest
import yaml
from cryptography import x509

from tests.harness import images, registry_server
from tests.harness.registry import LocalRegistry
from tests.harness.registry_client import Credentials
from tests.harness.registry_push import mirrors, write_outputs
from tests.harness.registry_server import Instance, is_ours, write_config
from tests.harness.registry_tls import make_tls


def test_plain_config_listens_on_loopback_only(tmp_path: Path) -> None:
    cfg = json.loads(write_config(tmp_path, 5123, None).read_text())
    assert cfg["http"]["addr"] == "127.0.0.1:5123"
    assert cfg["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "storage")
    assert "auth" not in cfg and "tls" not in cfg["http"]


def test_tls_material_and_config(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "pki")
    cfg = json.loads(write_config(tmp_path, 5124, tls).read_text())
    assert cfg["http"]["tls"] == {"certificate": str(tls.cert), "key": str(tls.key)}
    assert cfg["auth"]["htpasswd"]["path"] == str(tls.htpasswd)
    user, hashed = tls.htpasswd.read_text().strip().split(":", 1)
    assert user == tls.username and bcrypt.checkpw(tls.password.encode(), hashed.encode())
    assert os.stat(tls.key).st_mode & 0o077 == 0
    cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ctx = ssl.create_default_context(cafile=str(tls.ca_cert))  # the CA loads as a trust root
    assert ctx.cert_store_stats()["x509_ca"] == 1
    again = make_tls(tmp_path / "pki")  # reused, not regenerated
    assert again.password == tls.password and again.cert.read_bytes() == tls.cert.read_bytes()


def test_basic_auth_header() -> None:
    header = Credentials("u", "p:w").header()
    assert header == "Basic " + base64.b64encode(b"u:p:w").decode()


def test_a_pid_that_does_not_serve_our_config_is_not_ours(tmp_path: Path) -> None:
    me = Instance(name="x", pid=os.getpid(), port=1, config=str(tmp_path / "config.yml"),
                  tls=False)
    assert not is_ours(me)
    assert not is_ours(Instance(name="x", pid=2**22 + 7, port=1, config="c", tls=False))


def test_outputs_mirror_every_upstream_host_to_the_plain_registry(tmp_path: Path) -> None:
    reg = LocalRegistry(host="127.0.0.1:5555", tls_host="127.0.0.1:5556",
                        ca_file=tmp_path / "ca.crt", username="u", password="p", root=tmp_path)
    write_outputs(tmp_path, env=reg.env(), host=reg.host)
    data = yaml.safe_load((tmp_path / "mirrors.yaml").read_text())
    assert data == mirrors(reg.host)
    assert set(data) == set(images.MIRROR_HOSTS)
    assert data["registry.k8s.io"] == {"endpoint": ["http://127.0.0.1:5555"], "upstream": False}
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines())
    assert env["REGISTRY"] == "127.0.0.1:5555" and env["REGISTRY_TLS"] == "127.0.0.1:5556"
    hosts = (tmp_path / "certs.d/docker.io/hosts.toml").read_text()
    assert 'server = "http://127.0.0.1:5555"' in hosts  # never falls back upstream
    parsed = tomllib.loads(hosts)
    assert parsed["host"]["http://127.0.0.1:5555"]["capabilities"] == ["pull", "resolve"]
    assert reg.ref("registry.k8s.io/e2e-test-images/busybox:1.29-2") == \
        "127.0.0.1:5555/e2e-test-images/busybox:1.29-2"


def test_missing_docker_registry_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(registry_server, "DEBIAN_BINARY", str(tmp_path / "absent"))
    with pytest.raises(registry_server.RegistryStartError,
                       match="apt-get install docker-registry"):
        registry_server.registry_binary()
