from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from engine.errors import InvalidArgument, NotFound
from engine.images import ImageService
from tests.harness.prereq import need_binary
from tests.unit.graph.conftest import assert_consistent, make_service
from tests.unit.registry.fake import FakeRegistry, build_image, index_of, sha, tar_of

L1 = tar_of({"bin/": None, "bin/sh": b"shell", "etc/os": b"one"})
L2 = tar_of({"etc/os": b"two"})


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_save_then_load_round_trip(service: ImageService, registry: FakeRegistry,
                                   tmp_path: Path) -> None:
    built = build_image([L1, L2])
    registry.push("app", "v1", built)
    img = service.pull(f"{registry.host}/app:v1")
    out = tmp_path / "saved.tar"
    service.save([f"{registry.host}/app:v1"], out)
    with tarfile.open(out) as t:
        names = set(t.getnames())
    assert {"oci-layout", "index.json", "manifest.json"} <= names
    other = make_service(tmp_path / "other", registry)
    try:
        (loaded,) = other.load(out)
        assert loaded.id == img.id and loaded.layers == img.layers
        assert loaded.repo_tags == (f"{registry.host}/app:v1",)
        assert loaded.repo_digests == (f"{registry.host}/app@{built.digest}",)
        assert_consistent(other.graph)
    finally:
        other.close()


def test_load_docker_save_archive(service: ImageService, tmp_path: Path) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(L1), sha(L2)]}}).encode()
    archive = tmp_path / "docker.tar"
    archive.write_bytes(tar_bytes({
        f"{sha(config)[7:]}.json": config, "aaa/layer.tar": L1, "bbb/layer.tar": L2,
        "manifest.json": json.dumps([{"Config": f"{sha(config)[7:]}.json",
                                      "RepoTags": ["busybox:saved"],
                                      "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]).encode()}))
    (img,) = service.load(archive)
    assert img.id == sha(config) and img.repo_tags == ("docker.io/library/busybox:saved",)
    assert service.get("busybox:saved").config.cmd == ("sh",)
    mounts = service.create_rootfs("c", "busybox:saved")
    assert (Path(mounts[0].source) / "etc/os").read_bytes() == b"two"
    assert_consistent(service.graph)


def test_load_oci_layout_with_index(service: ImageService, tmp_path: Path) -> None:
    amd = build_image([L1])
    arm = build_image([L2], arch="arm")
    idx = index_of([(arm, {"os": "linux", "architecture": "arm"}),
                    (amd, {"os": "linux", "architecture": "amd64"})])
    files = {f"blobs/sha256/{d[7:]}": b for d, b in {**amd.blobs, **arm.blobs}.items()}
    files.update({f"blobs/sha256/{amd.digest[7:]}": amd.manifest,
                  f"blobs/sha256/{arm.digest[7:]}": arm.manifest,
                  f"blobs/sha256/{sha(idx)[7:]}": idx,
                  "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                  "index.json": json.dumps({"schemaVersion": 2, "manifests": [{
                      "mediaType": "application/vnd.oci.image.index.v1+json",
                      "digest": sha(idx), "size": len(idx), "annotations": {
                          "io.containerd.image.name": "example.com/multi:1"}}]}).encode()})
    archive = tmp_path / "oci.tar"
    archive.write_bytes(tar_bytes(files))
    (img,) = service.load(archive)
    assert img.id == amd.config_digest and img.index == sha(idx)
    assert set(img.repo_tags) == {"example.com/multi:1"}
    assert set(img.repo_digests) == {f"example.com/multi@{sha(idx)}"}


def test_bad_archives(service: ImageService, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"definitely not a tar" * 100)
    with pytest.raises(InvalidArgument):
        service.load(junk)
    with pytest.raises(NotFound):
        service.load(tmp_path / "missing.tar")
    config = json.dumps({"os": "linux", "rootfs": {"type": "layers",
                                                   "diff_ids": [sha(L1)]}}).encode()
    broken = tmp_path / "broken.tar"
    broken.write_bytes(tar_bytes({"c.json": config, "manifest.json": json.dumps([{
        "Config": "c.json", "RepoTags": ["x:y"], "Layers": ["nope/layer.tar"]}]).encode()}))
    with pytest.raises(InvalidArgument, match="missing"):
        service.load(broken)
    wrong = tmp_path / "wrong.tar"
    wrong.write_bytes(tar_bytes({"c.json": config, "l.tar": L2, "manifest.json": json.dumps([{
        "Config": "c.json", "RepoTags": ["x:y"], "Layers": ["l.tar"]}]).encode()}))
    with pytest.raises(InvalidArgument, match="config says"):
        service.load(wrong)
    assert service.list() == [] and list(service.graph.content.digests()) == []
    assert_consistent(service.graph)


@pytest.mark.e2e
def test_skopeo_reads_our_export(service: ImageService, registry: FakeRegistry,
                                 tmp_path: Path) -> None:
    skopeo = need_binary("skopeo", "apt-get install skopeo")
    registry.push("app", "v1", build_image([L1, L2]))
    img = service.pull(f"{registry.host}/app:v1")
    out = tmp_path / "x.tar"
    service.save([img.id], out)
    for transport in ("oci-archive", "docker-archive"):
        proc = subprocess.run([skopeo, "inspect", "--raw", f"{transport}:{out}"],
                              capture_output=True, text=True, check=True)
        assert json.loads(proc.stdout)["config"]["digest"] == img.id
