from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.registry.auth import AuthConfig, from_docker_config, parse_challenges
from engine.registry.hosts import load_hosts, parse_hosts


def test_bearer_challenge() -> None:
    (c,) = parse_challenges('Bearer realm="https://auth.docker.io/token",'
                            'service="registry.docker.io",scope="repository:library/busybox:pull"')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                        "scope": "repository:library/busybox:pull"}


def test_several_challenges_and_escapes() -> None:
    cs = parse_challenges('Basic realm="a \\"b\\"", Bearer realm=x,error="invalid_token"')
    assert [c.scheme for c in cs] == ["basic", "bearer"]
    assert cs[0].params["realm"] == 'a "b"'
    assert cs[1].params == {"realm": "x", "error": "invalid_token"}


def test_auth_config_forms() -> None:
    assert AuthConfig(username="a", password="b").basic() == ("a", "b")
    assert AuthConfig(auth=base64.b64encode(b"u:p:q").decode()).basic() == ("u", "p:q")
    assert AuthConfig().empty() and not AuthConfig(registry_token="t").empty()
    with pytest.raises(InvalidArgument):
        AuthConfig(auth="!!!").basic()


def test_docker_config(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
        "127.0.0.1:5000": {"username": "x", "password": "y"},
        "ghcr.io": {"identitytoken": "refresh"}}}))
    hub = from_docker_config(p, "docker.io")
    assert hub is not None and hub.basic() == ("hub", "pw")
    local = from_docker_config(p, "127.0.0.1:5000")
    assert local is not None and local.basic() == ("x", "y")
    gh = from_docker_config(p, "ghcr.io")
    assert gh is not None and gh.identity_token == "refresh"
    assert from_docker_config(p, "quay.io") is None
    assert from_docker_config(tmp_path / "missing.json", "quay.io") is None


def test_hosts_mirrors_and_insecure(tmp_path: Path) -> None:
    p = tmp_path / "hosts.yaml"
    p.write_text("docker.io:\n  endpoint: ['http://127.0.0.1:5000']\n"
                 "registry.k8s.io:\n  endpoint: ['127.0.0.1:5001']\n"
                 "127.0.0.1:5001:\n  insecure: true\n")
    hosts = load_hosts(p)
    eps = hosts.endpoints("docker.io")
    assert [(e.scheme, e.host, e.mirror) for e in eps] == [
        ("http", "127.0.0.1:5000", True), ("https", "registry-1.docker.io", False)]
    k8s = hosts.endpoints("registry.k8s.io")[0]
    assert (k8s.scheme, k8s.host) == ("http", "127.0.0.1:5001")
    assert hosts.endpoints("quay.io")[0].base == "https://quay.io"
    only = parse_hosts({"gcr.io": {"endpoint": ["http://127.0.0.1:1"], "upstream": False}})
    assert [e.host for e in only.endpoints("gcr.io")] == ["127.0.0.1:1"]
    with pytest.raises(InvalidArgument):
        parse_hosts({"x": {"endpoint": "ftp://a"}}).endpoints("x")
    with pytest.raises(InvalidArgument, match="unknown keys"):
        parse_hosts({"x": {"mirrors": []}})
