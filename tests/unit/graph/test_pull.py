from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path

import pytest

from engine.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable
from engine.graph.errors import DigestMismatch, SizeMismatch, TruncatedContent
from engine.graphdriver.unpack import Limits
from engine.images import ImageService, PullEvent
from engine.registry.errors import AuthenticationError, PlatformNotFound
from tests.unit.graph.conftest import assert_consistent, make_service
from tests.unit.graphdriver.tarmaker import Tar
from tests.unit.registry.fake import (
    LAYER_GZIP,
    Built,
    FakeRegistry,
    build_image,
    index_of,
    running,
    sha,
    tar_of,
)

BASE = tar_of({"bin/": None, "bin/sh": b"#!" + b"s" * 5000, "etc/os": b"fake"})


def push(reg: FakeRegistry, repo: str, layers: list[bytes], **kw: object) -> Built:
    built = build_image(layers, **kw)  # type: ignore[arg-type]
    reg.push(repo, "v1", built)
    return built


def blob_hits(reg: FakeRegistry) -> int:
    return sum(n for p, n in reg.hits.items() if "/blobs/" in p)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_pull_multi_layer(service: ImageService, registry: FakeRegistry,
                          compression: str) -> None:
    top = tar_of({"etc/os": b"changed", "app/run": b"run"})
    built = push(registry, "app", [BASE, top], compression=compression)
    events: list[PullEvent] = []
    img = service.pull(f"{registry.host}/app:v1", progress=events.append)
    assert img.id == built.config_digest
    assert img.repo_tags == (f"{registry.host}/app:v1",)
    assert img.repo_digests == (f"{registry.host}/app@{built.digest}",)
    assert img.config.cmd == ("/bin/sh",) and img.config.env == ("PATH=/bin",)
    assert len(img.layers) == 2 and img.size > 0
    assert {e.phase for e in events} >= {"resolved", "downloaded", "unpacked", "done"}
    assert [i.id for i in service.list()] == [img.id]
    assert service.get(img.id[:19]).id == img.id and service.get(img.id[7:]).id == img.id
    assert service.get(f"{registry.host}/app@{built.digest}").id == img.id
    assert service.status(f"{registry.host}/app:nope") is None
    assert service.fs_info().used_bytes > 0
    mounts = service.create_rootfs("ctr1", img.id)
    assert mounts[0].type == "bind"  # vfs: the full tree in one directory
    root = Path(mounts[0].source)
    assert (root / "etc/os").read_bytes() == b"changed"
    assert (root / "bin/sh").read_bytes().startswith(b"#!")
    assert service.rootfs_usage("ctr1").size > 0
    with pytest.raises(NotFound):
        service.rootfs_usage("nope")
    assert_consistent(service.graph)


def test_second_pull_and_shared_layers_download_nothing_twice(
        service: ImageService, registry: FakeRegistry) -> None:
    push(registry, "one", [BASE, tar_of({"one": b"1"})])
    push(registry, "two", [BASE, tar_of({"two": b"2"})])
    service.pull(f"{registry.host}/one:v1")
    first = blob_hits(registry)
    assert first == 3  # config + two layers
    service.pull(f"{registry.host}/one:v1")
    assert blob_hits(registry) == first
    service.pull(f"{registry.host}/two:v1")
    assert blob_hits(registry) == first + 2  # its config and its own layer only
    assert len(service.layers()) == 3
    shared = [la for la in service.layers() if len(la.images) == 2]
    assert len(shared) == 1 and shared[0].parent is None
    (root,) = service.layer_graph()
    assert root.chain_id == shared[0].chain_id and len(root.used_by) == 2 and root.tops == ()
    assert sorted(t for child in root.children for t in child.tops) == [
        f"{registry.host}/one:v1", f"{registry.host}/two:v1"]
    assert all(child.children == () for child in root.children)
    assert_consistent(service.graph)


def test_concurrent_pulls_download_once(service: ImageService, registry: FakeRegistry) -> None:
    push(registry, "app", [BASE, tar_of({"a": b"1"}), tar_of({"b": b"2"})])
    registry.delay_blobs = 0.2
    results: list[object] = []

    def pull() -> None:
        results.append(service.pull(f"{registry.host}/app:v1").id)
    threads = [threading.Thread(target=pull) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 3
    blob_paths = [p for p in registry.hits if "/blobs/" in p]
    assert len(blob_paths) == 4 and all(registry.hits[p] == 1 for p in blob_paths)
    assert_consistent(service.graph)


def test_remove_keeps_shared_layers_until_last_user(service: ImageService,
                                                    registry: FakeRegistry) -> None:
    push(registry, "one", [BASE, tar_of({"one": b"1"})])
    push(registry, "two", [BASE, tar_of({"two": b"2"})])
    one = service.pull(f"{registry.host}/one:v1")
    two = service.pull(f"{registry.host}/two:v1")
    service.remove(f"{registry.host}/one:v1")
    assert [i.id for i in service.list()] == [two.id]
    assert len(service.layers()) == 2
    service.create_rootfs("ctr", two.id)
    service.remove(two.id)
    assert service.list() == [] and len(service.layers()) == 2  # the rootfs pins them
    with pytest.raises(NotFound):
        service.remove(one.id)
    assert_consistent(service.graph)
    service.remove_rootfs("ctr")
    assert service.layers() == [] and list(service.graph.content.digests()) == []
    assert_consistent(service.graph)


def test_untag_and_retag(service: ImageService, registry: FakeRegistry) -> None:
    first = push(registry, "app", [BASE])
    service.pull(f"{registry.host}/app:v1")
    second = push(registry, "app", [BASE, tar_of({"new": b"n"})])
    service.pull(f"{registry.host}/app:v1")
    old = service.get(first.config_digest)
    assert old.repo_tags == () and old.repo_digests  # the tag moved to the new image
    assert service.get(f"{registry.host}/app:v1").id == second.config_digest
    service.untag(f"{registry.host}/app:v1")
    assert service.get(second.config_digest).repo_digests
    with pytest.raises(NotFound):
        service.untag(f"{registry.host}/app:v1")


def test_index_picks_platform_and_refuses_missing_one(service: ImageService,
                                                      registry: FakeRegistry) -> None:
    amd = build_image([tar_of({"amd": b"1"})])
    arm = build_image([tar_of({"arm": b"2"})], arch="arm")
    idx = index_of([(arm, {"os": "linux", "architecture": "arm", "variant": "v7"}),
                    (amd, {"os": "linux", "architecture": "amd64"})])
    registry.push_index("multi", "v1", idx, [amd, arm])
    img = service.pull(f"{registry.host}/multi:v1")
    assert img.id == amd.config_digest and img.index == sha(idx)
    assert img.repo_digests == (f"{registry.host}/multi@{sha(idx)}",)
    registry.push_index("armonly", "v1", index_of([(arm, {"os": "linux",
                                                         "architecture": "arm"})]), [arm])
    with pytest.raises(PlatformNotFound):
        service.pull(f"{registry.host}/armonly:v1")
    assert_consistent(service.graph)


def failing(service: ImageService, registry: FakeRegistry, ref: str,
            err: type[Exception], match: str | None = None) -> None:
    with pytest.raises(err, match=match):
        service.pull(ref)
    assert service.list() == []
    assert service.layers() == []
    assert list(service.graph.content.digests()) == []
    assert_consistent(service.graph)


def test_digest_mismatch_then_retry_works(service: ImageService,
                                          registry: FakeRegistry) -> None:
    built = push(registry, "app", [BASE, tar_of({"x": b"1"})])
    registry.fault(built.layer_digests[1], "corrupt")
    failing(service, registry, f"{registry.host}/app:v1", DigestMismatch)
    assert service.pull(f"{registry.host}/app:v1").id == built.config_digest
    assert_consistent(service.graph)


def test_truncated_stream_is_retried_then_fails(service: ImageService,
                                                registry: FakeRegistry) -> None:
    built = push(registry, "app", [BASE])
    registry.fault(built.layer_digests[0], "truncate")
    assert service.pull(f"{registry.host}/app:v1").id == built.config_digest
    service.remove(built.config_digest)
    registry.fault(built.layer_digests[0], *["truncate"] * 10)
    failing(service, registry, f"{registry.host}/app:v1", TruncatedContent)


def test_500_then_success(service: ImageService, registry: FakeRegistry) -> None:
    built = push(registry, "app", [BASE])
    registry.fault("/blobs/", "500", "500")
    registry.fault("/manifests/", "500")
    assert service.pull(f"{registry.host}/app:v1").id == built.config_digest


def test_size_mismatch(service: ImageService, registry: FakeRegistry) -> None:
    built = push(registry, "app", [BASE])
    doc = json.loads(built.manifest)
    doc["layers"][0]["size"] -= 10
    built.manifest = json.dumps(doc).encode()
    registry.push("app", "v1", built)
    failing(service, registry, f"{registry.host}/app:v1", SizeMismatch)


def test_diff_id_mismatch(service: ImageService, registry: FakeRegistry) -> None:
    push(registry, "app", [BASE], diff_ids=[sha(b"something else")])
    failing(service, registry, f"{registry.host}/app:v1", InvalidArgument, "diff|config says")


def test_layer_count_mismatch(service: ImageService, registry: FakeRegistry) -> None:
    push(registry, "app", [BASE], diff_ids=[sha(BASE), sha(BASE)])
    failing(service, registry, f"{registry.host}/app:v1", InvalidArgument, "diff_ids")


def test_gzip_bomb(tmp_path: Path, registry: FakeRegistry) -> None:
    svc = make_service(tmp_path / "s", registry, limits=Limits(max_bytes=4 << 20))
    bomb = Tar().file("zeros", b"\0" * (16 << 20)).bytes()
    push(registry, "bomb", [bomb])
    try:
        failing(svc, registry, f"{registry.host}/bomb:v1", ResourceExhausted)
    finally:
        svc.close()


def test_tar_breakout_layer(service: ImageService, registry: FakeRegistry,
                            tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.write_bytes(b"safe")
    push(registry, "evil", [Tar().hardlink("h", str(canary)).bytes()])
    failing(service, registry, f"{registry.host}/evil:v1", InvalidArgument, "hardlink")
    assert canary.read_bytes() == b"safe" and canary.stat().st_nlink == 1


def test_zero_byte_layer(service: ImageService, registry: FakeRegistry) -> None:
    built = push(registry, "zero", [BASE])
    doc = json.loads(built.manifest)
    doc["layers"].append({"mediaType": LAYER_GZIP, "digest": sha(b""), "size": 0})
    cfg = json.loads(built.config)
    cfg["rootfs"]["diff_ids"].append(sha(b""))
    built.config = json.dumps(cfg).encode()
    doc["config"].update(digest=sha(built.config), size=len(built.config))
    built.manifest = json.dumps(doc).encode()
    built.blobs.update({sha(b""): b"", sha(built.config): built.config})
    registry.push("zero", "v1", built)
    failing(service, registry, f"{registry.host}/zero:v1", InvalidArgument, "empty")


def test_corrupt_gzip_layer(service: ImageService, registry: FakeRegistry) -> None:
    built = push(registry, "bad", [BASE])
    good = built.blobs.pop(built.layer_digests[0])
    bad = gzip.compress(b"garbage that is not a tar" * 100)
    assert good != bad
    doc = json.loads(built.manifest)
    doc["layers"][0].update(digest=sha(bad), size=len(bad))
    built.manifest = json.dumps(doc).encode()
    built.blobs[sha(bad)] = bad
    registry.push("bad", "v1", built)
    failing(service, registry, f"{registry.host}/bad:v1", InvalidArgument)


def test_unparsable_reference_and_unknown(service: ImageService, registry: FakeRegistry) -> None:
    with pytest.raises(InvalidArgument):
        service.pull("Not A Reference")
    with pytest.raises(InvalidArgument):
        service.status("UPPERCASE")
    with pytest.raises(NotFound):
        service.pull(f"{registry.host}/missing:v1")
    assert_consistent(service.graph)


def test_401_without_challenge(tmp_path: Path) -> None:
    for reg in running(auth="nochallenge"):
        push(reg, "app", [BASE])
        svc = make_service(tmp_path / "s", reg)
        try:
            with pytest.raises(AuthenticationError, match="WWW-Authenticate"):
                svc.pull(f"{reg.host}/app:v1")
            assert_consistent(svc.graph)
        finally:
            svc.close()


def test_registry_down_is_unavailable(tmp_path: Path) -> None:
    for reg in running():
        host = reg.host
    svc = make_service(tmp_path / "s", reg)
    try:
        with pytest.raises(Unavailable):
            svc.pull(f"{host}/app:v1")
    finally:
        svc.close()


def test_same_config_through_two_manifests_keeps_both_names(service: ImageService,
                                                            registry: FakeRegistry) -> None:
    oci = build_image([BASE], compression="gzip")
    other = build_image([BASE], compression="zstd")  # same config, another manifest
    assert oci.config_digest == other.config_digest and oci.digest != other.digest
    registry.push("a", "v1", oci)
    registry.push("b", "v1", other)
    service.pull(f"{registry.host}/a:v1")
    img = service.pull(f"{registry.host}/b:v1")
    assert set(img.repo_tags) == {f"{registry.host}/a:v1", f"{registry.host}/b:v1"}
    assert service.get(f"{registry.host}/a@{oci.digest}").id == img.id
    assert_consistent(service.graph)


def test_concurrent_pulls_of_different_images(service: ImageService,
                                              registry: FakeRegistry) -> None:
    refs = []
    for n in range(4):
        push(registry, f"img{n}", [BASE] + [tar_of({f"f{n}-{i}": b"x" * 3000})
                                            for i in range(3)])
        refs.append(f"{registry.host}/img{n}:v1")
    errors: list[BaseException] = []

    def pull(ref: str) -> None:
        try:
            service.pull(ref)
        except BaseException as exc:
            errors.append(exc)
    threads = [threading.Thread(target=pull, args=(r,)) for r in refs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(service.list()) == 4 and len(service.layers()) == 1 + 4 * 3
    for n, ref in enumerate(refs):
        service.remove(ref)
        assert len(service.layers()) == (1 + 3 * (3 - n) if n < 3 else 0)
    assert_consistent(service.graph)
