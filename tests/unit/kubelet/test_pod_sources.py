from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from kubelet_py.pods.pleg import changed_uids
from kubelet_py.pods.pull_auth import SecretPullAuth, auth_from_dockerconfig, registry_of
from kubelet_py.pods.static import (
    CHECK_PERIOD,
    HASH,
    MIRROR,
    SOURCE,
    WATCH_PERIOD,
    ManifestError,
    StaticPodSource,
    is_mirror,
    mirror_of,
    static_pod,
)

from .fakes import ManualClock, run_async

MANIFEST = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}


def test_static_pod_identity_and_defaults() -> None:
    pod = static_pod(MANIFEST, node_name="n1", source="web.yaml")
    meta = pod["metadata"]
    assert meta["name"] == "web-n1" and meta["namespace"] == "default"
    assert meta["annotations"][SOURCE] == "file"
    assert meta["annotations"][HASH] == meta["uid"]
    assert pod["spec"]["nodeName"] == "n1"
    assert pod["spec"]["restartPolicy"] == "Always"
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    again = static_pod(MANIFEST, node_name="n1", source="web.yaml")
    assert again["metadata"]["uid"] == meta["uid"]  # stable across reads
    other = static_pod(MANIFEST, node_name="n2", source="web.yaml")
    assert other["metadata"]["uid"] != meta["uid"]
    edited = json.loads(json.dumps(MANIFEST))
    edited["spec"]["containers"][0]["image"] = "busybox:latest"
    changed = static_pod(edited, node_name="n1", source="web.yaml")
    assert changed["metadata"]["uid"] != meta["uid"]
    assert changed["spec"]["containers"][0]["imagePullPolicy"] == "Always"


@pytest.mark.parametrize("doc", [[], {"kind": "Deployment"},
                                 {"kind": "Pod", "metadata": {}, "spec": {"containers": []}},
                                 {"kind": "Pod", "metadata": {"name": "x"}, "spec": {}}])
def test_bad_manifests(doc: Any) -> None:
    with pytest.raises(ManifestError):
        static_pod(doc, node_name="n1", source="f")


def test_mirror_pod() -> None:
    pod = static_pod(MANIFEST, node_name="n1", source="web.yaml")
    mirror = mirror_of(pod)
    assert is_mirror(mirror) and not is_mirror(pod)
    assert mirror["metadata"]["annotations"][MIRROR] == pod["metadata"]["uid"]
    assert "uid" not in mirror["metadata"] and "status" not in mirror


def test_static_source_add_edit_remove(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    src = StaticPodSource(tmp_path, node_name="n1", clock=ManualClock(),
                          handler=lambda k, p: events.append((k, p["metadata"]["uid"])))
    (tmp_path / "web.yaml").write_text(json.dumps(MANIFEST))
    (tmp_path / ".hidden.yaml").write_text(json.dumps(MANIFEST))
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "bad.yaml").write_text("kind: [")
    src.sync_once()
    assert [k for k, _ in events] == ["ADDED"]
    first = events[0][1]
    src.sync_once()
    assert len(events) == 1  # unchanged file: no event
    edited = json.loads(json.dumps(MANIFEST))
    edited["spec"]["containers"][0]["command"] = ["true"]
    (tmp_path / "web.yaml").write_text(json.dumps(edited))
    src.sync_once()
    assert events[1] == ("DELETED", first) and events[2][0] == "ADDED"
    (tmp_path / "web.yaml").unlink()
    src.sync_once()
    assert events[3] == ("DELETED", events[2][1])


@run_async
async def test_static_source_sees_a_change_long_before_the_full_re_read(tmp_path: Path) -> None:
    clock = ManualClock()
    events: list[str] = []
    src = StaticPodSource(tmp_path, node_name="n1", clock=clock,
                          handler=lambda kind, pod: events.append(kind))
    (tmp_path / "web.yaml").write_text(json.dumps(MANIFEST))
    task = asyncio.create_task(src.run())
    try:
        await asyncio.sleep(0)
        assert events == ["ADDED"]
        removed = clock.monotonic()
        (tmp_path / "web.yaml").unlink()
        while len(events) < 2 and clock.monotonic() - removed < 2 * CHECK_PERIOD:
            await asyncio.sleep(0)  # each turn, the source sleeps (and time moves) once
        assert events == ["ADDED", "DELETED"]
        assert clock.monotonic() - removed <= WATCH_PERIOD < CHECK_PERIOD
    finally:
        task.cancel()


def test_pleg_changed_uids() -> None:
    before = {"s/1": "u1 0", "c/a": "u1 1", "c/b": "u2 1"}
    after = {"s/1": "u1 0", "c/a": "u1 2", "c/c": "u3 0"}
    assert changed_uids(before, after) == {"u1", "u2", "u3"}
    assert changed_uids(after, after) == set()


def test_registry_of() -> None:
    assert registry_of("busybox") == "docker.io"
    assert registry_of("library/busybox:1") == "docker.io"
    assert registry_of("127.0.0.1:5000/x/y:1") == "127.0.0.1:5000"
    assert registry_of("registry.k8s.io/pause:3.10") == "registry.k8s.io"
    assert registry_of("localhost/x") == "localhost"


def test_dockerconfig_auth() -> None:
    auth = base64.b64encode(b"alice:s3cret").decode()
    doc = {"auths": {"https://index.docker.io/v1/": {"auth": auth},
                     "reg.example:5000": {"username": "bob", "password": "pw"}}}
    hub = auth_from_dockerconfig(doc, "docker.io")
    assert hub is not None and (hub.username, hub.password) == ("alice", "s3cret")
    private = auth_from_dockerconfig(doc, "reg.example:5000")
    assert private is not None and private.username == "bob"
    assert auth_from_dockerconfig(doc, "quay.io") is None


class SecretApi:
    def __init__(self, secrets: dict[str, dict[str, Any]]) -> None:
        self.secrets = secrets

    async def get(self, path: str, *, params: Any = None) -> dict[str, Any]:
        from kubelet_py.client.errors import NotFound

        name = path.rsplit("/", 1)[-1]
        if name not in self.secrets:
            raise NotFound(404, "NotFound", name)
        return self.secrets[name]


@run_async
async def test_pull_auth_from_image_pull_secrets() -> None:
    cfg = {"auths": {"127.0.0.1:5000": {"username": "u", "password": "p"}}}
    api = SecretApi({"regcred": {"data": {".dockerconfigjson": base64.b64encode(
        json.dumps(cfg).encode()).decode()}}})
    pod = {"metadata": {"namespace": "ns"},
           "spec": {"imagePullSecrets": [{"name": "missing"}, {"name": "regcred"}]}}
    found = await SecretPullAuth(api).auth_for(pod, "127.0.0.1:5000/app:1")
    assert found is not None and found.username == "u"
    assert await SecretPullAuth(api).auth_for(pod, "quay.io/app:1") is None
    assert await SecretPullAuth(None).auth_for(pod, "127.0.0.1:5000/app:1") is None
