from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from cri.api import runtime_pb2 as pb
from kubelet_py.client.errors import NotFound
from kubelet_py.node.allocatable import Allocatable
from kubelet_py.pods.cri_config import (
    ConfigProblem,
    NodeContext,
    container_config,
    sandbox_config,
)
from kubelet_py.pods.envvars import Environment
from kubelet_py.pods.model import container_hash
from kubelet_py.pods.quantity import QuantityError, bytes_of, millicores, parse_quantity
from kubelet_py.pods.volumes import PreparedVolume, VolumeError, Volumes

from .fakes import run_async

ALLOC = Allocatable(cpu_millis=2000, memory_bytes=4 * 2**30,
                    ephemeral_storage_bytes=20 * 2**30, pods=110)
CTX = NodeContext(node_name="n1", host_ips=("192.0.2.10",), cluster_dns=("10.96.0.10",),
                  cluster_domain="cluster.local", log_root=Path("/var/log/pods"),
                  allocatable=ALLOC)
NO_ENV = Environment(env=())


def pod(**spec: Any) -> dict[str, Any]:
    base = {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
            "spec": {**base, **spec}}


def test_quantities() -> None:
    assert millicores("500m") == 500 and millicores("2") == 2000 and millicores("0.1") == 100
    assert bytes_of("128Mi") == 128 * 2**20 and bytes_of("1G") == 10**9
    assert bytes_of("1e3") == 1000
    assert parse_quantity(3) == 3
    for bad in ("", "12x", "Mi", "1.2.3"):
        with pytest.raises(QuantityError):
            parse_quantity(bad)


def test_sandbox_config() -> None:
    p = pod(containers=[{"name": "c", "image": "i", "ports": [
        {"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}])
    cfg = sandbox_config(CTX, p, attempt=2)
    assert (cfg.metadata.name, cfg.metadata.uid, cfg.metadata.attempt) == ("p", "u1", 2)
    assert cfg.log_directory == "/var/log/pods/ns_p_u1"
    assert cfg.labels["io.kubernetes.pod.uid"] == "u1" and cfg.labels["app"] == "x"
    assert list(cfg.dns_config.servers) == ["10.96.0.10"]
    assert list(cfg.dns_config.searches) == ["ns.svc.cluster.local", "svc.cluster.local",
                                             "cluster.local"]
    assert [(m.container_port, m.host_port) for m in cfg.port_mappings] == [(80, 8080)]
    assert cfg.linux.security_context.namespace_options.network == pb.POD
    assert cfg.hostname == "p"


def test_host_network_sandbox() -> None:
    cfg = sandbox_config(CTX, pod(hostNetwork=True), attempt=0)
    assert cfg.linux.security_context.namespace_options.network == pb.NODE
    assert cfg.hostname == "n1"
    assert not cfg.HasField("dns_config") or not cfg.dns_config.servers


def test_container_config() -> None:
    spec = {"name": "c", "image": "busybox:1.36", "command": ["sh", "$(CMD)"],
            "args": ["-c", "echo $(A) $$(A) $(NOPE)"],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "resources": {"requests": {"cpu": "250m"},
                          "limits": {"cpu": "500m", "memory": "64Mi"}}}
    env = Environment(env=(("A", "1"), ("CMD", "run"), ("BIN", "\udcff")))
    cfg = container_config(CTX, pod(), spec, attempt=3,
                           volumes={"data": PreparedVolume("/host/data", False)},
                           image_ref="sha256:abc", environment=env)
    assert (cfg.metadata.name, cfg.metadata.attempt) == ("c", 3)
    assert cfg.image.image == "sha256:abc" and cfg.image.user_specified_image == "busybox:1.36"
    assert list(cfg.command) == ["sh", "run"]
    assert list(cfg.args) == ["-c", "echo 1 $(A) $(NOPE)"]
    assert [(e.key, e.value) for e in cfg.envs] == [("A", b"1"), ("CMD", b"run"),
                                                    ("BIN", b"\xff")]
    assert [(m.container_path, m.host_path) for m in cfg.mounts] == [("/data", "/host/data")]
    assert cfg.log_path == "c/3.log"
    assert cfg.annotations["io.kubernetes.container.restartCount"] == "3"
    res = cfg.linux.resources
    assert res.cpu_shares == 256 and res.cpu_quota == 50_000 and res.cpu_period == 100_000
    assert res.memory_limit_in_bytes == 64 * 2**20


def test_container_hash_covers_name_and_image_only() -> None:
    base = {"name": "c", "image": "busybox:1.36"}
    cfg = container_config(CTX, pod(), base, attempt=0, volumes={}, image_ref="",
                           environment=NO_ENV)
    assert cfg.annotations["io.kubernetes.container.hash"] == container_hash(base)
    assert container_hash(base) == container_hash(
        {**base, "resources": {"limits": {"cpu": "1"}}, "env": [{"name": "X", "value": "y"}]})
    assert container_hash(base) != container_hash({**base, "image": "busybox:1.37"})
    assert container_hash(base) != container_hash({**base, "name": "d"})


@pytest.mark.parametrize("spec,match", [
    ({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, "no volume named nope"),
    ({"resources": {"limits": {"memory": "lots"}}}, "not a resource quantity"),
])
def test_container_config_problems(spec: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigProblem, match=match):
        container_config(CTX, pod(), {"name": "c", "image": "i", **spec}, attempt=0,
                         volumes={}, image_ref="", environment=NO_ENV)


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {
            "/api/v1/namespaces/ns/configmaps/kube-root-ca.crt": {"data": {"ca.crt": "CA"}},
            "/api/v1/namespaces/ns/secrets/s": {
                "data": {"k": base64.b64encode(b"secret!").decode()}}}
        self.tokens: list[dict[str, Any]] = []

    async def get(self, path: str, *, params: Any = None) -> dict[str, Any]:
        if path not in self.objects:
            raise NotFound(404, "NotFound", path)
        return self.objects[path]

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.tokens.append({"path": path, **body})
        return {"status": {"token": "tok"}}


@run_async
async def test_volumes(tmp_path: Path) -> None:
    api = FakeApi()
    p = pod(serviceAccountName="sa", volumes=[
        {"name": "scratch", "emptyDir": {}},
        {"name": "conf", "secret": {"secretName": "s", "defaultMode": 0o400}},
        {"name": "access", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}},
            {"configMap": {"name": "kube-root-ca.crt",
                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "fieldPath": "metadata.namespace"}}]}}]}}])
    vols = await Volumes(api, root=tmp_path, allocatable=ALLOC).prepare(p)
    assert Path(vols["scratch"].host_path).is_dir() and not vols["scratch"].read_only
    secret = Path(vols["conf"].host_path) / "k"
    assert secret.read_bytes() == b"secret!" and (os.stat(secret).st_mode & 0o777) == 0o400
    access = Path(vols["access"].host_path)
    assert (access / "token").read_text() == "tok"
    assert (access / "ca.crt").read_text() == "CA"
    assert (access / "namespace").read_text() == "ns"
    req = api.tokens[0]
    assert req["path"] == "/api/v1/namespaces/ns/serviceaccounts/sa/token"
    assert req["spec"]["boundObjectRef"]["uid"] == "u1"
    assert req["spec"]["expirationSeconds"] == 600
    Volumes(api, root=tmp_path, allocatable=ALLOC).cleanup("u1")
    assert not (tmp_path / "pods" / "u1").exists()


@run_async
async def test_volume_errors(tmp_path: Path) -> None:
    vols = Volumes(FakeApi(), root=tmp_path, allocatable=ALLOC)
    with pytest.raises(VolumeError, match="type nfs is not supported"):
        await vols.prepare(pod(volumes=[{"name": "v", "nfs": {"server": "x", "path": "/"}}]))
    with pytest.raises(VolumeError, match='secret "gone" not found'):
        await vols.prepare(pod(volumes=[{"name": "v", "secret": {"secretName": "gone"}}]))
    ok = await vols.prepare(pod(volumes=[
        {"name": "v", "secret": {"secretName": "gone", "optional": True}}]))
    assert list(ok) == ["v"]
    with pytest.raises(VolumeError, match="needs an API server"):
        await Volumes(None, root=tmp_path, allocatable=ALLOC).prepare(
            pod(volumes=[{"name": "v", "configMap": {"name": "c"}}]))


@run_async
async def test_downward_api_volume_resources(tmp_path: Path) -> None:
    p = pod(volumes=[{"name": "info", "downwardAPI": {"items": [
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                             "divisor": "1Mi"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu",
                                             "divisor": "1m"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}])
    p["spec"]["containers"][0]["resources"] = {"limits": {"memory": "64Mi"}}
    vols = await Volumes(FakeApi(), root=tmp_path, allocatable=ALLOC).prepare(p)
    base = Path(vols["info"].host_path)
    assert (base / "mem").read_text() == "64"
    assert (base / "cpu").read_text() == "2000"  # no limit: the node's allocatable
    assert (base / "labels").read_text() == 'app="x"'
    bad = pod(volumes=[{"name": "info", "downwardAPI": {"items": [
        {"path": "x", "resourceFieldRef": {"resource": "limits.cpu"}}]}}])
    with pytest.raises(VolumeError, match="downwardAPI x: resourceFieldRef needs a "
                                          "containerName"):
        await Volumes(FakeApi(), root=tmp_path, allocatable=ALLOC).prepare(bad)
