from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from engine.errors import InvalidArgument, NotFound, Unavailable
from engine.graph.content import ContentStore
from engine.graph.errors import DigestMismatch, TruncatedContent
from engine.registry.auth import AuthConfig
from engine.registry.client import RegistryClient
from engine.registry.errors import AccessDenied, AuthenticationError, PlatformNotFound
from engine.registry.hosts import parse_hosts
from engine.registry.manifest import Platform
from engine.registry.reference import parse
from tests.unit.registry.fake import (
    OCI_MANIFEST,
    Built,
    FakeRegistry,
    build_image,
    index_of,
    running,
    tar_of,
)

AMD64 = Platform("linux", "amd64")


def client(reg: FakeRegistry, **kw: object) -> RegistryClient:
    sleeps: list[float] = []
    c = RegistryClient(parse_hosts({reg.host: {"insecure": True}}), platform=AMD64,
                       sleep=sleeps.append, **kw)
    c.sleeps = sleeps
    return c


def push_simple(reg: FakeRegistry, repo: str = "app", tag: str = "v1") -> Built:
    built = build_image([tar_of({"a": b"hello"})])
    reg.push(repo, tag, built)
    return built


def test_anonymous_resolve_and_blob(registry: FakeRegistry, tmp_path: Path) -> None:
    built = push_simple(registry)
    c = client(registry)
    r = c.resolve(parse(f"{registry.host}/app:v1"))
    assert r.manifest.digest == built.digest
    assert r.digest == built.digest
    store = ContentStore(tmp_path)
    seen: list[int] = []
    c.fetch_blob(r.session, r.parsed.layers[0],
                 lambda: store.writer(r.parsed.layers[0].digest, r.parsed.layers[0].size),
                 seen.append)
    assert store.exists(r.parsed.layers[0].digest) and sum(seen) == r.parsed.layers[0].size


def test_bearer_challenge_with_credentials() -> None:
    for reg in running(auth="bearer"):
        push_simple(reg)
        c = client(reg)
        r = c.resolve(parse(f"{reg.host}/app:v1"), AuthConfig(username="u", password="p"))
        assert r.parsed.layers
        assert reg.tokens_issued == 1
        assert "scope=repository%3Aapp%3Apull" in reg.token_requests[0]
        assert "service=fake" in reg.token_requests[0]
        with pytest.raises(AuthenticationError, match="token server"):
            c.resolve(parse(f"{reg.host}/app:v1"), AuthConfig(username="u", password="bad"))
        with pytest.raises(AuthenticationError):
            c.resolve(parse(f"{reg.host}/app:v1"))


def test_registry_token_is_used_directly() -> None:
    for reg in running(auth="bearer"):
        push_simple(reg)
        auth = AuthConfig(registry_token="good-token")
        r = client(reg).resolve(parse(f"{reg.host}/app:v1"), auth)
        assert r.parsed.layers and reg.tokens_issued == 0


def test_basic_auth() -> None:
    for reg in running(auth="basic"):
        push_simple(reg)
        c = client(reg)
        auth = AuthConfig(username="u", password="p")
        assert c.resolve(parse(f"{reg.host}/app:v1"), auth).parsed.layers
        with pytest.raises(AuthenticationError, match="no credentials"):
            c.resolve(parse(f"{reg.host}/app:v1"))
        with pytest.raises(AuthenticationError, match="refused"):
            c.resolve(parse(f"{reg.host}/app:v1"), AuthConfig(username="u", password="x"))


def test_401_without_challenge_is_precise() -> None:
    for reg in running(auth="nochallenge"):
        push_simple(reg)
        with pytest.raises(AuthenticationError, match="without a WWW-Authenticate challenge"):
            client(reg).resolve(parse(f"{reg.host}/app:v1"))


def test_403_is_access_denied_not_a_credentials_problem() -> None:
    for reg in running(auth="basic"):
        push_simple(reg)
        reg.fault("/manifests/", "403")
        with pytest.raises(AccessDenied, match="403"):
            client(reg).resolve(parse(f"{reg.host}/app:v1"), AuthConfig(username="u",
                                                                       password="p"))


def test_500_then_success(registry: FakeRegistry) -> None:
    push_simple(registry)
    registry.fault("/manifests/", "500", "500")
    c = client(registry)
    assert c.resolve(parse(f"{registry.host}/app:v1")).parsed.layers
    assert c.sleeps == [0.2, 0.4]


def test_500_forever_is_unavailable(registry: FakeRegistry) -> None:
    push_simple(registry)
    registry.fault("/manifests/", *["500"] * 10)
    with pytest.raises(Unavailable, match="giving up after 5 attempts"):
        client(registry).resolve(parse(f"{registry.host}/app:v1"))


def test_unknown_tag_is_not_found(registry: FakeRegistry) -> None:
    push_simple(registry)
    with pytest.raises(NotFound):
        client(registry).resolve(parse(f"{registry.host}/app:nope"))


def test_index_platform_choice_and_missing_platform(registry: FakeRegistry) -> None:
    amd = build_image([tar_of({"amd": b"1"})])
    arm = build_image([tar_of({"arm": b"2"})], arch="arm")
    registry.push_index("multi", "v1", index_of([
        (arm, {"os": "linux", "architecture": "arm", "variant": "v7"}),
        (amd, {"os": "linux", "architecture": "amd64"})]), [amd, arm])
    r = client(registry).resolve(parse(f"{registry.host}/multi:v1"))
    assert r.manifest.digest == amd.digest and r.index is not None
    assert r.digest == r.index.digest
    registry.push_index("armonly", "v1", index_of([
        (arm, {"os": "linux", "architecture": "arm", "variant": "v7"})]), [arm])
    with pytest.raises(PlatformNotFound, match="linux/amd64"):
        client(registry).resolve(parse(f"{registry.host}/armonly:v1"))


def test_mirror_serves_docker_hub_names(registry: FakeRegistry) -> None:
    built = push_simple(registry, "library/busybox", "latest")
    c = RegistryClient(parse_hosts({"docker.io": {"endpoint": [f"http://{registry.host}"]}}),
                       platform=AMD64)
    r = c.resolve(parse("busybox"))
    assert r.manifest.digest == built.digest
    assert r.session.endpoint.mirror


def test_truncated_blob_is_retried_then_fails(registry: FakeRegistry, tmp_path: Path) -> None:
    push_simple(registry)
    c = client(registry)
    r = c.resolve(parse(f"{registry.host}/app:v1"))
    layer = r.parsed.layers[0]
    store = ContentStore(tmp_path)
    registry.fault("/blobs/", "truncate")
    c.fetch_blob(r.session, layer, lambda: store.writer(layer.digest, layer.size))
    assert store.exists(layer.digest)
    store.delete(layer.digest)
    registry.fault("/blobs/", *["truncate"] * 10)
    with pytest.raises(TruncatedContent):
        c.fetch_blob(r.session, layer, lambda: store.writer(layer.digest, layer.size))
    assert not store.exists(layer.digest) and not list(store.ingest_dir.iterdir())


def test_corrupt_blob_is_digest_mismatch(registry: FakeRegistry, tmp_path: Path) -> None:
    push_simple(registry)
    c = client(registry)
    r = c.resolve(parse(f"{registry.host}/app:v1"))
    layer = r.parsed.layers[0]
    store = ContentStore(tmp_path)
    registry.fault("/blobs/", "corrupt")
    with pytest.raises(DigestMismatch):
        c.fetch_blob(r.session, layer, lambda: store.writer(layer.digest, layer.size))
    assert not store.exists(layer.digest) and not list(store.ingest_dir.iterdir())


def test_manifest_by_digest_is_verified(registry: FakeRegistry) -> None:
    built = push_simple(registry)
    other = build_image([tar_of({"x": b"y"})])
    registry.manifests[("app", built.digest)] = (other.manifest, OCI_MANIFEST)
    with pytest.raises(DigestMismatch):
        client(registry).resolve(parse(f"{registry.host}/app@{built.digest}"))


def test_identity_token_is_exchanged_for_an_access_token() -> None:
    for reg in running(auth="bearer"):
        push_simple(reg)
        r = client(reg).resolve(parse(f"{reg.host}/app:v1"),
                                AuthConfig(identity_token="refresh-me"))
        assert r.parsed.layers and reg.tokens_issued == 1
        assert "('grant_type', 'refresh_token')" in reg.token_requests[0]
        assert "('scope', 'repository:app:pull')" in reg.token_requests[0]


def test_blob_redirect_to_another_host_drops_credentials(tmp_path: Path) -> None:
    for cdn in running():
        for reg in running(auth="basic"):
            built = push_simple(reg)
            cdn.blobs.update(built.blobs)
            reg.redirect_blobs_to = cdn.host
            c = client(reg)
            r = c.resolve(parse(f"{reg.host}/app:v1"), AuthConfig(username="u", password="p"))
            blob = r.parsed.layers[0]
            store = ContentStore(tmp_path)
            c.fetch_blob(r.session, blob, functools.partial(store.writer, blob.digest, blob.size))
            assert store.exists(blob.digest)
            assert cdn.cdn_auth_headers == [None]


def test_failing_mirror_falls_back_to_the_next_endpoint() -> None:
    for mirror in running():
        for upstream in running():
            built = push_simple(upstream)
            mirror.fault("/manifests/", *["500"] * 10)
            hosts = parse_hosts({upstream.host: {"endpoint": [f"http://{mirror.host}"],
                                                 "insecure": True}})
            c = RegistryClient(hosts, platform=AMD64, sleep=lambda _: None)
            r = c.resolve(parse(f"{upstream.host}/app:v1"))
            assert r.digest == built.digest and not r.session.endpoint.mirror
            with pytest.raises(NotFound, match="mirrors"):
                c.resolve(parse(f"{upstream.host}/app:missing"))


def test_index_entry_media_type_must_match_the_manifest(registry: FakeRegistry) -> None:
    amd = build_image([tar_of({"amd": b"1"})])
    idx = json.loads(index_of([(amd, {"os": "linux", "architecture": "amd64"})]))
    idx["manifests"][0]["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    body = json.dumps(idx).encode()
    registry.push_index("liar", "v1", body, [amd])
    with pytest.raises(InvalidArgument, match="index lists"):
        client(registry).resolve(parse(f"{registry.host}/liar:v1"))
