"""The standard image set: contents of the variants, the mirror table, reference parsing."""
from __future__ import annotations

import gzip
import io
import json
import os
import platform
import stat
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from tests.harness import images
from tests.harness import images_build as b
from tests.harness.images_rootfs import (
    BUSYBOX,
    PGREP_SCRIPT,
    REQUIRED_APPLETS,
    effective_uid_program,
)
from tests.harness.oci_image import Image, Index, host_arch
from tests.harness.oci_layer import Compression, Layer
from tests.harness.prereq import need


@pytest.fixture(autouse=True)
def _busybox() -> None:
    need(BUSYBOX.is_file(), f"{BUSYBOX} (busybox-static)", "apt-get install busybox-static")


def _tar(layer: Layer) -> tarfile.TarFile:
    assert layer.compression is Compression.GZIP
    return tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.blob)))


def _config(image: Image) -> dict[str, object]:
    cfg = json.loads(image.config.data)["config"]
    assert isinstance(cfg, dict)
    return cfg


def test_base_layer_has_busybox_applets_users_and_directories() -> None:
    with _tar(b.base_layer()) as tar:
        members = {m.name: m for m in tar.getmembers()}
        passwd = tar.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
        group = tar.extractfile("etc/group").read().decode()  # type: ignore[union-attr]
    assert members["bin/busybox"].isreg() and members["bin/busybox"].mode == 0o755
    for applet in REQUIRED_APPLETS:
        assert members[f"bin/{applet}"].islnk(), applet
        assert members[f"bin/{applet}"].linkname == "bin/busybox"
    assert members["usr/bin/env"].issym() and members["usr/bin/env"].linkname == "/bin/env"
    for d in ("tmp", "proc", "sys", "dev", "etc", "root", "home/user"):
        assert members[d].isdir(), d
    assert members["tmp"].mode == 0o1777
    assert members["bin/ipcs"].isreg() or members["bin/ipcs"].islnk()  # critest runs ipcs -m
    assert members["bin/pgrep"].isreg() or members["bin/pgrep"].islnk()  # and pgrep sleep
    assert "root:x:0:0:" in passwd and "nobody:x:65534:65534:" in passwd
    assert "user:x:1000:1000:" in passwd and "www-data:x:33:" in passwd
    assert "user:x:1000:" in group and "users:x:100:" in group


def test_whiteout_image_layers_carry_whiteouts_and_an_opaque_dir() -> None:
    image = b.whiteout_image()
    assert len(image.layers) == 4
    with _tar(image.layers[2]) as tar:
        names = tar.getnames()
    assert "data/.wh.remove-me" in names and "opq/.wh..wh..opq" in names
    assert "bin/.wh.vi" in names and "opq/new" in names


def test_variants_set_the_config_fields_they_are_named_after() -> None:
    assert _config(b.user_image("1000:1000"))["User"] == "1000:1000"
    entry = _config(b.entrypoint_image())
    assert entry["Entrypoint"] == ["/bin/echo", "entrypoint"] and entry["Cmd"] == ["from", "cmd"]
    assert "GREETING=hello world" in _config(b.env_image())["Env"]  # type: ignore[operator]
    assert _config(b.volume_image())["Volumes"] == {"/data": {}}
    assert _config(b.workdir_image())["WorkingDir"] == "/srv/app"
    assert b.zstd_image().layers[-1].compression is Compression.ZSTD
    assert b.uncompressed_image().layers[0].compression is Compression.NONE


def test_multi_platform_index_has_host_and_foreign_platforms() -> None:
    index = b.multi_platform_index()
    arches = [json.loads(i.config.data)["architecture"] for i in index.images]
    assert arches == [host_arch(), b.foreign_arch()] and arches[0] != arches[1]


def test_building_the_standard_set_twice_is_bit_identical() -> None:
    first = [(r, t, _digest(f())) for r, t, f in images.local_images()]
    b.base_layer.cache_clear()
    second = [(r, t, _digest(f())) for r, t, f in images.local_images()]
    assert first == second


def _digest(item: Image | Index) -> str:
    return item.manifest.digest if isinstance(item, Image) else item.blob.digest


def test_cri_tools_image_semantics() -> None:
    by_ref = {m.upstream: m.build for m in images.MIRRORED}
    tags = [_digest(by_ref[images.CRI_TOOLS + f"test-image-tags:{n}"]()) for n in (1, 2, 3)]
    assert len(set(tags)) == 1
    distinct = [_digest(by_ref[images.CRI_TOOLS + f"test-image-{n}:latest"]()) for n in (1, 2, 3)]
    assert len(set(distinct)) == 3
    users = {"test-image-user-uid": "1002", "test-image-user-username": "www-data",
             "test-image-user-uid-group": "1003:users",
             "test-image-user-username-group": "www-data:users",
             "test-image-predefined-group": "1000"}
    for name, user in users.items():
        image = by_ref[images.CRI_TOOLS + name + ":latest"]()
        assert isinstance(image, Image) and _config(image)["User"] == user


def test_every_critest_reference_is_mirrored_and_local_names_do_not_collide() -> None:
    upstream = {m.upstream for m in images.MIRRORED}
    for needed in ("registry.k8s.io/pause:3.10", "registry.k8s.io/e2e-test-images/busybox:1.29-2",
                   "docker.io/library/busybox:latest", "docker.io/library/busybox:1.36",
                   images.E2E + "nginx:1.14-2", images.E2E + "httpd:2.4.39-4",
                   images.E2E + "nonewprivs:1.3"):
        assert needed in upstream
    # the image-identity specs pull pause:3.9 from two hosts and expect one image: both
    # names must land on one local repository:tag
    assert "registry.k8s.io/pause:3.9" in upstream
    assert (images.parse_reference("k8s.gcr.io/pause:3.9").local
            == images.parse_reference("registry.k8s.io/pause:3.9").local)
    assert "k8s.gcr.io" in images.MIRROR_HOSTS
    local = [f"{r}:{t}" for r, t, _ in images.local_images()]
    assert len(local) == len(set(local))
    for ref in images.OFFLINE_IMPOSSIBLE:
        with pytest.raises(ValueError, match="digest"):
            images.parse_reference(ref)


@pytest.mark.parametrize(("ref", "host", "repo", "tag"), [
    ("registry.k8s.io/pause:3.10", "registry.k8s.io", "pause", "3.10"),
    ("registry.k8s.io/e2e-test-images/busybox:1.29-2", "registry.k8s.io",
     "e2e-test-images/busybox", "1.29-2"),
    ("busybox", "docker.io", "library/busybox", "latest"),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36"),
    ("index.docker.io/library/busybox:1.36", "docker.io", "library/busybox", "1.36"),
    ("someone/tool", "docker.io", "someone/tool", "latest"),
    ("127.0.0.1:5000/kubelet-py/busybox", "127.0.0.1:5000", "kubelet-py/busybox", "latest"),
    ("localhost/x:y", "localhost", "x", "y"),
])
def test_parse_reference(ref: str, host: str, repo: str, tag: str) -> None:
    assert images.parse_reference(ref) == images.Reference(host, repo, tag)


@pytest.mark.parametrize("bad", ["Busybox:1", "registry.k8s.io/pause@sha256:" + "0" * 64])
def test_parse_reference_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        images.parse_reference(bad)


def test_effective_uid_program_runs(tmp_path: Path) -> None:
    need(platform.machine() == "x86_64", "an x86-64 machine (the program is x86-64 code)",
         "run on x86-64")
    prog = tmp_path / "nnp"
    prog.write_bytes(effective_uid_program("amd64"))
    prog.chmod(stat.S_IRWXU)
    out = subprocess.run([str(prog)], capture_output=True, check=True, timeout=10).stdout
    assert out == f"Effective uid: {os.geteuid()}\n".encode()


def test_effective_uid_program_refuses_other_arches() -> None:
    with pytest.raises(NotImplementedError, match="amd64"):
        effective_uid_program("arm64")


def test_large_image_is_multi_layer_with_many_files_of_the_requested_size() -> None:
    image = b.large_image(2, layers=2, file_kb=16)
    assert len(image.layers) == 3  # base + 2
    bulk = image.layers[1:]
    assert sum(la.tar_size for la in bulk) >= 2 * 1024 * 1024
    with _tar(bulk[0]) as tar:
        files = [m for m in tar.getmembers() if m.isreg()]
    assert len(files) == 64 and {m.size for m in files} == {16 * 1024}
    assert b.large_image(2, layers=2, file_kb=16).manifest.digest == image.manifest.digest
    with pytest.raises(ValueError):
        b.large_image(0)


def test_missing_busybox_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    from tests.harness import images_rootfs

    monkeypatch.setattr(images_rootfs, "BUSYBOX", tmp_path / "busybox")
    images_rootfs.busybox_binary.cache_clear()
    try:
        with pytest.raises(images_rootfs.BusyboxUnavailable, match="busybox-static"):
            images_rootfs.busybox_binary()
    finally:
        images_rootfs.busybox_binary.cache_clear()


def test_pgrep_stand_in_finds_processes_by_name_but_not_itself(tmp_path: Path) -> None:
    script = tmp_path / "pgrep"
    script.write_text("#!/bin/sh\n" + PGREP_SCRIPT)
    name = "kpysl" + uuid.uuid4().hex[:8]  # a process name no one else has
    target = tmp_path / name
    target.symlink_to(BUSYBOX)  # busybox runs the applet its argv[0] names: not ours
    sleeper = subprocess.Popen(["sleep", "30"], executable=target)
    try:
        deadline = time.monotonic() + 60
        while Path(f"/proc/{sleeper.pid}/comm").read_text().strip() != name[:15]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        found = subprocess.run([str(BUSYBOX), "sh", str(script), name[:15]],
                               check=False, capture_output=True, text=True, timeout=30)
        assert (found.returncode, found.stdout.split(), found.stderr) == (
            0, [str(sleeper.pid)], "")
        script.chmod(0o755)  # run as itself, its name is "pgrep": it must not list itself
        own = subprocess.Popen([str(script), "^pgrep$"], stdout=subprocess.PIPE, text=True)
        assert str(own.pid) not in own.communicate(timeout=30)[0].split()
    finally:
        sleeper.kill()
        sleeper.wait()
    gone = subprocess.run([str(BUSYBOX), "sh", str(script), name[:15]],
                          check=False, capture_output=True, text=True, timeout=30)
    assert (gone.returncode, gone.stdout, gone.stderr) == (1, "", "")
    usage = subprocess.run([str(BUSYBOX), "sh", str(script), "-f", "x"],
                           check=False, capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "only 'pgrep PATTERN'" in usage.stderr
