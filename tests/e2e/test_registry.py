"""Our images and pusher against the real docker-registry, checked with skopeo and umoci."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.harness import images, registry_server
from tests.harness import images_build as b
from tests.harness.oci_image import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    host_arch,
)
from tests.harness.oci_layout import docker_archive, write_layout_dir
from tests.harness.prereq import REPO, need_binary
from tests.harness.registry import LocalRegistry
from tests.harness.registry import down as registry_down
from tests.harness.registry import up as registry_up
from tests.harness.registry_client import Credentials, RegistryClient, RegistryError

pytestmark = pytest.mark.e2e


def _run(*args: str, timeout: float = 120) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{args} failed: {proc.stderr}"
    return proc.stdout


def test_push_then_read_everything_back_by_digest(local_registry: LocalRegistry) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    image = b.marker_image(name)  # a layer no other image has: a real upload
    with local_registry.client() as client:
        digest, sent = client.push(f"e2e/{name}", "v1", image)
        assert digest == image.manifest.digest and sent >= 2
        assert client.push(f"e2e/{name}", "v1", image)[1] == 0  # HEAD skips existing blobs
        got = client.get_manifest(f"e2e/{name}", "v1")
        assert got.data == image.manifest.data and got.media_type == OCI_MANIFEST
        assert client.get_manifest(f"e2e/{name}", digest).data == image.manifest.data
        assert client.get_blob(f"e2e/{name}", image.config.digest) == image.config.data
        for layer in image.layers:
            assert client.get_blob(f"e2e/{name}", layer.digest) == layer.blob


def test_cross_repository_mount_uploads_nothing(local_registry: LocalRegistry) -> None:
    layer = b.marker_image(f"mount-{uuid.uuid4().hex[:8]}").layers[-1]
    with local_registry.client() as client:
        assert client.push_blob("e2e/mount-src", layer.blob, digest=layer.digest) == "uploaded"
        assert client.push_blob("e2e/mount-dst", layer.blob, digest=layer.digest,
                                mount_from="e2e/mount-src") == "mounted"
        assert client.push_blob("e2e/mount-dst", layer.blob, digest=layer.digest) == "exists"
        assert client.blob_exists("e2e/mount-dst", layer.digest)


@pytest.mark.parametrize(("name", "media_type"), [
    ("kubelet-py/busybox:latest", OCI_MANIFEST), ("kubelet-py/index:latest", OCI_INDEX),
    ("kubelet-py/docker:latest", DOCKER_MANIFEST), ("kubelet-py/docker-list:latest", DOCKER_LIST),
    ("registry.k8s.io/pause:3.10", OCI_MANIFEST),
    ("docker.io/library/busybox:1.36", DOCKER_LIST),
])
def test_standard_set_is_served_with_its_media_type(local_registry: LocalRegistry, name: str,
                                                     media_type: str) -> None:
    ref = images.parse_reference(name)
    with local_registry.client() as client:
        assert client.get_manifest(ref.repository, ref.tag).media_type == media_type


def test_mirrored_names_keep_the_upstream_repository_path(local_registry: LocalRegistry) -> None:
    host = local_registry.host
    assert local_registry.ref("registry.k8s.io/pause:3.10") == f"{host}/pause:3.10"
    assert local_registry.ref("busybox:1.36") == f"{host}/library/busybox:1.36"
    mirrors = (local_registry.root / "mirrors.yaml").read_text()
    assert f"http://{host}" in mirrors and "registry.k8s.io:" in mirrors
    with local_registry.client() as client:
        for item in images.MIRRORED:
            ref = images.parse_reference(item.upstream)
            assert client.manifest_digest(ref.repository, ref.tag), item.upstream


@pytest.mark.parametrize("name", ["kubelet-py/busybox", "kubelet-py/zstd", "kubelet-py/index",
                                  "kubelet-py/docker-list", "registry.k8s.io/pause:3.10",
                                  "registry.k8s.io/e2e-test-images/busybox:1.29-2"])
def test_skopeo_inspects_our_images(local_registry: LocalRegistry, name: str) -> None:
    skopeo = need_binary("skopeo", "apt-get install skopeo")
    out = json.loads(_run(skopeo, "inspect", "--tls-verify=false",
                          f"docker://{local_registry.ref(name)}"))
    assert out["Architecture"] == host_arch() and out["Os"] == "linux"
    assert out["Layers"] and all(d.startswith("sha256:") for d in out["Layers"])


def _unpack(local_registry: LocalRegistry, name: str, tmp_path: Path) -> Path:
    skopeo = need_binary("skopeo", "apt-get install skopeo")
    umoci = need_binary("umoci", "apt-get install umoci")
    tmp_path.mkdir(parents=True, exist_ok=True)
    layout = tmp_path / "layout"
    _run(skopeo, "copy", "--quiet", "--src-tls-verify=false",
         f"docker://{local_registry.ref(name)}", f"oci:{layout}:img")
    bundle = tmp_path / "bundle"
    _run(umoci, "unpack", "--image", f"{layout}:img", str(bundle))
    return bundle


def test_umoci_unpacks_the_base_image(local_registry: LocalRegistry, tmp_path: Path) -> None:
    rootfs = _unpack(local_registry, "kubelet-py/busybox", tmp_path) / "rootfs"
    assert os.path.samefile(rootfs / "bin/sh", rootfs / "bin/busybox")
    assert os.readlink(rootfs / "usr/bin/env") == "/bin/env"
    assert "user:x:1000:1000:" in (rootfs / "etc/passwd").read_text()
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    out = _run(str(rootfs / "bin/busybox"), "echo", "runs")
    assert out == "runs\n"


def test_umoci_applies_whiteouts_and_opaque_dirs(local_registry: LocalRegistry,
                                                 tmp_path: Path) -> None:
    rootfs = _unpack(local_registry, "kubelet-py/whiteout", tmp_path) / "rootfs"
    assert sorted(os.listdir(rootfs / "data")) == ["keep"]
    assert (rootfs / "data/keep").read_text() == "kept and rewritten\n"
    assert sorted(os.listdir(rootfs / "opq")) == ["new"]
    assert not (rootfs / "bin/vi").exists() and (rootfs / "bin/sh").exists()


def test_umoci_reads_uncompressed_layers_and_our_config(local_registry: LocalRegistry,
                                                        tmp_path: Path) -> None:
    bundle = _unpack(local_registry, "kubelet-py/uncompressed", tmp_path)
    assert (bundle / "rootfs/bin/busybox").is_file()
    bundle2 = _unpack(local_registry, "kubelet-py/workdir", tmp_path / "w")
    spec = json.loads((bundle2 / "config.json").read_text())
    assert spec["process"]["cwd"] == "/srv/app" and spec["process"]["args"] == ["sh"]


def test_tls_registry_requires_credentials(local_registry: LocalRegistry) -> None:
    with local_registry.client(tls=True, auth=False) as anonymous:
        resp = anonymous.ping(auth=False)
        assert resp.status == 401
        assert resp.headers["www-authenticate"].startswith("Basic realm=")
        with pytest.raises(RegistryError) as err:
            anonymous.get_manifest("kubelet-py/busybox", "latest")
        assert err.value.status == 401
    wrong = RegistryClient(local_registry.tls_host, tls=True, ca_file=local_registry.ca_file,
                           credentials=Credentials(local_registry.username, "wrong"))
    with wrong:
        assert wrong.ping().status == 401
    with local_registry.client(tls=True) as client:
        assert client.ping().status == 200
        assert client.get_manifest("kubelet-py/busybox", "latest").media_type == OCI_MANIFEST


def test_skopeo_uses_the_tls_registry_with_ca_and_credentials(local_registry: LocalRegistry,
                                                              tmp_path: Path) -> None:
    skopeo = need_binary("skopeo", "apt-get install skopeo")
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(local_registry.ca_file, certs / "ca.crt")
    target = f"docker://{local_registry.tls_host}/kubelet-py/env:latest"
    anonymous = subprocess.run([skopeo, "inspect", "--cert-dir", str(certs), target],
                               capture_output=True, text=True, timeout=60, check=False)
    assert anonymous.returncode != 0 and "unauthorized" in anonymous.stderr.lower()
    creds = f"{local_registry.username}:{local_registry.password}"
    out = json.loads(_run(skopeo, "inspect", "--cert-dir", str(certs), "--creds", creds, target))
    assert "GREETING=hello world" in out["Env"]


def test_cli_up_is_idempotent_and_down_leaves_nothing(tmp_path: Path) -> None:
    need_binary("docker-registry", "apt-get install docker-registry")
    cmd = [sys.executable, "-m", "tests.harness.registry"]
    first = subprocess.run([*cmd, "up", "--dir", str(tmp_path)], capture_output=True, text=True,
                           cwd=REPO, timeout=300, check=False)
    try:
        assert first.returncode == 0, first.stderr
        last = first.stdout.strip().splitlines()[-1]
        assert last.startswith("REGISTRY=127.0.0.1:")
        state = json.loads((tmp_path / "state.json").read_text())
        pids = [i["pid"] for i in state["instances"].values()]
        env = (tmp_path / "env").read_text()
        for key in ("REGISTRY=", "REGISTRY_TLS=", "REGISTRY_CA=", "REGISTRY_USER=",
                    "REGISTRY_PASSWORD="):
            assert key in env
        second = subprocess.run([*cmd, "up", "--dir", str(tmp_path)], capture_output=True,
                                text=True, cwd=REPO, timeout=300, check=False)
        assert second.returncode == 0 and second.stdout.strip().splitlines()[-1] == last
        assert "nothing to do" in second.stderr, second.stderr
        # A killed instance is stale state: the next `up` notices and starts afresh.
        os.kill(pids[0], 9)
        third = subprocess.run([*cmd, "up", "--dir", str(tmp_path)], capture_output=True,
                               text=True, cwd=REPO, timeout=300, check=False)
        assert third.returncode == 0 and "stale state" in third.stderr, third.stderr
        pids = [i["pid"] for i in json.loads((tmp_path / "state.json").read_text())
                ["instances"].values()]
    finally:
        down = subprocess.run([*cmd, "down", "--dir", str(tmp_path)], capture_output=True,
                              text=True, cwd=REPO, timeout=60, check=False)
    assert down.returncode == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "docker-registry" not in \
            Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    assert not (tmp_path / "state.json").exists()


@pytest.mark.parametrize("name", ["kubelet-py/index", "kubelet-py/docker-list",
                                  "library/busybox"])
def test_index_children_resolve_by_digest(local_registry: LocalRegistry, name: str) -> None:
    tag = "1.36" if name == "library/busybox" else "latest"
    with local_registry.client() as client:
        index = json.loads(client.get_manifest(name, tag).data)
        assert index["manifests"]
        for desc in index["manifests"]:
            child = client.get_manifest(name, desc["digest"])
            assert child.digest == desc["digest"] and child.media_type == desc["mediaType"]
            config = json.loads(child.data)["config"]
            blob = json.loads(client.get_blob(name, config["digest"]))
            assert blob["architecture"] == desc["platform"]["architecture"]


def test_up_never_kills_a_recorded_pid_that_is_not_our_registry(tmp_path: Path) -> None:
    need_binary("docker-registry", "apt-get install docker-registry")
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        (tmp_path / "state.json").write_text(json.dumps({"instances": {
            "plain": {"name": "plain", "pid": bystander.pid, "port": 1,
                      "config": str(tmp_path / "plain/config.yml"), "tls": False}}}))
        reg = registry_up(tmp_path)
        try:
            assert bystander.poll() is None  # stale record, live stranger: left alone
            with reg.client() as client:
                assert client.ping().status == 200
        finally:
            notes = registry_down(tmp_path)
        assert any("stopped plain" in note for note in notes)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_skopeo_reads_our_offline_archives(tmp_path: Path) -> None:
    skopeo = need_binary("skopeo", "apt-get install skopeo")
    image = b.env_image()
    write_layout_dir(tmp_path / "layout", [("env", image), ("idx", b.multi_platform_index())])
    out = json.loads(_run(skopeo, "inspect", f"oci:{tmp_path / 'layout'}:env"))
    assert out["Digest"] == image.manifest.digest
    archive = tmp_path / "save.tar"
    archive.write_bytes(docker_archive(image, ["kubelet-py/env:latest"]))
    raw = json.loads(_run(skopeo, "inspect", "--config", f"docker-archive:{archive}"))
    assert raw["rootfs"]["diff_ids"] == [layer.diff_id for layer in image.layers]


def test_a_port_taken_meanwhile_is_retried_on_another(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    need_binary("docker-registry", "apt-get install docker-registry")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        real = registry_server.free_port
        monkeypatch.setattr(registry_server, "free_port", lambda: next(ports, None) or real())
        instance = registry_server.start(tmp_path, name="retry")
        try:
            assert instance.port != taken.getsockname()[1]
            assert "address already in use" in (tmp_path / "registry.log").read_text()
        finally:
            assert registry_server.stop(instance)
