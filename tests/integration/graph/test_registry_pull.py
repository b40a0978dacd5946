"""Pull the harness's images from the real local registry (docker-registry) into overlay."""
from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.graphdriver.mount import mount_all, unmount
from engine.images import ImageService
from engine.registry.auth import AuthConfig
from engine.registry.errors import AuthenticationError
from engine.registry.hosts import load_hosts, parse_hosts
from tests.harness.images import LOCAL_IMAGES, LOCAL_PREFIX
from tests.harness.prereq import need_binary
from tests.harness.registry import LocalRegistry
from tests.unit.graph.conftest import assert_consistent

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture
def svc(tmp_path: Path, local_registry: LocalRegistry) -> Iterator[ImageService]:
    hosts = load_hosts(local_registry.root / "mirrors.yaml")
    merged = {**hosts.hosts, **parse_hosts({local_registry.host: {"insecure": True},
                                            local_registry.tls_host: {
                                                "ca": str(local_registry.ca_file)}}).hosts}
    s = ImageService(tmp_path / "store", driver="overlay", hosts=type(hosts)(merged))
    yield s
    s.close()


@contextlib.contextmanager
def rootfs(svc: ImageService, image: str, tmp: Path) -> Iterator[Path]:
    key = f"ctr-{secrets.token_hex(4)}"
    target = tmp / key
    target.mkdir()
    mount_all(svc.create_rootfs(key, image), str(target))
    try:
        yield target
    finally:
        unmount(str(target))
        svc.remove_rootfs(key)


def test_every_local_image(svc: ImageService, local_registry: LocalRegistry,
                           tmp_path: Path) -> None:
    for name in LOCAL_IMAGES:
        img = svc.pull(f"{local_registry.host}/{LOCAL_PREFIX}/{name}:latest")
        with rootfs(svc, img.id, tmp_path) as root:
            assert (root / "bin" / "busybox").exists(), name
    assert_consistent(svc.graph)


def test_whiteouts_and_opaque_dirs_in_the_merged_view(svc: ImageService,
                                                      local_registry: LocalRegistry,
                                                      tmp_path: Path) -> None:
    img = svc.pull(f"{local_registry.host}/{LOCAL_PREFIX}/whiteout:latest")
    with rootfs(svc, img.id, tmp_path) as root:
        assert (root / "data/keep").read_bytes() == b"kept and rewritten\n"
        assert not (root / "data/remove-me").exists()
        assert sorted(p.name for p in (root / "opq").iterdir()) == ["new"]
        assert not (root / "bin/vi").exists() and (root / "bin/sh").exists()


def test_mirrors_serve_upstream_names(svc: ImageService) -> None:
    for ref in ("busybox", "docker.io/library/busybox:1.36", "registry.k8s.io/pause:3.10"):
        img = svc.pull(ref)
        assert img.layers
    assert "docker.io/library/busybox:latest" in svc.get("busybox:latest").repo_tags
    assert_consistent(svc.graph)


def test_tls_registry_with_basic_auth(svc: ImageService, local_registry: LocalRegistry) -> None:
    ref = f"{local_registry.tls_host}/{LOCAL_PREFIX}/busybox:latest"
    with pytest.raises(AuthenticationError):
        svc.pull(ref)
    auth = AuthConfig(username=local_registry.username, password=local_registry.password)
    assert svc.pull(ref, auth).layers
    assert_consistent(svc.graph)


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_load_archives_written_by_skopeo(svc: ImageService, local_registry: LocalRegistry,
                                         tmp_path: Path, transport: str) -> None:
    skopeo = need_binary("skopeo", "apt-get install skopeo")
    src = f"{local_registry.host}/{LOCAL_PREFIX}/whiteout:latest"
    out = tmp_path / "image.tar"
    name = "example.com/whiteout:saved"
    dest = f"{transport}:{out}:{name}"
    subprocess.run([skopeo, "copy", "--quiet", "--src-tls-verify=false", f"docker://{src}",
                    dest], check=True, capture_output=True)
    (img,) = svc.load(out)
    assert name in img.repo_tags
    with rootfs(svc, name, tmp_path) as root:
        assert (root / "data/keep").read_bytes() == b"kept and rewritten\n"
        assert not (root / "bin/vi").exists()
    assert_consistent(svc.graph)
