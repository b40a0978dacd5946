"""The kubeletpy.engine.v1 servicer over a fake engine, through its gRPC stub and through
enginectl's image commands."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import grpc
import pytest

from cri.api import engine_pb2 as epb
from cri.api import engine_pb2_grpc
from tests.unit.ctl.conftest import Served
from tests.unit.ctl.fake_engine import LAYER_A, LAYER_B


def stub(served: Served) -> engine_pb2_grpc.EngineServiceStub:
    channel = grpc.insecure_channel(served.server.endpoint)
    return engine_pb2_grpc.EngineServiceStub(channel)  # type: ignore[no-untyped-call]


def test_pull_streams_layer_progress_then_the_image_id(served: Served) -> None:
    events = list(stub(served).PullImage(epb.PullImageRequest(
        ref="busybox:1", credentials=epb.Credentials(username="u", password="p:w"))))
    assert [(e.phase, e.layer) for e in events] == [
        ("resolved", ""), ("exists", LAYER_A), ("downloading", LAYER_B),
        ("downloaded", LAYER_B), ("unpacked", LAYER_B), ("done", "")]
    assert events[2].current == 5 and events[2].total == 10
    assert events[-1].image_id == "sha256:" + f"{1:064x}"
    auth = served.engine.auths[0]
    assert auth is not None and (auth.username, auth.password) == ("u", "p:w")


def test_pull_without_credentials_passes_no_auth(served: Served) -> None:
    list(stub(served).PullImage(epb.PullImageRequest(ref="busybox:1")))
    assert served.engine.auths == [None]


@pytest.mark.parametrize(("ref", "code"), [("", grpc.StatusCode.INVALID_ARGUMENT),
                                           ("unreachable.example/x:1",
                                            grpc.StatusCode.UNAVAILABLE)])
def test_pull_errors_are_precise_statuses(served: Served, ref: str,
                                          code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.RpcError) as info:
        list(stub(served).PullImage(epb.PullImageRequest(ref=ref)))
    assert info.value.code() == code
    assert (info.value.details() or "").startswith("PullImage: ")


def test_enginectl_pull_plain_lines_off_a_terminal(served: Served) -> None:
    r = served.ctl("pull", "--creds", "u:p", "busybox:1")
    assert r.code == 0, r.err
    assert "Image ID: sha256:" in r.out
    assert "aaaaaaaaaaaa: Already exists" in r.err
    assert "bbbbbbbbbbbb: Downloading [" in r.err
    assert "\x1b[" not in r.err


def test_enginectl_pull_rejects_malformed_creds(served: Served) -> None:
    r = served.ctl("pull", "--creds", "nocolon", "busybox:1")
    assert (r.code, r.err) == (125, "enginectl: --creds must be USER:PASSWORD\n")
    assert served.engine.auths == []


def test_enginectl_pull_failure_is_one_line(served: Served) -> None:
    r = served.ctl("pull", "unreachable.example/x:1")
    assert r.code == 125
    assert r.err.splitlines()[-1] == \
        "enginectl: UNAVAILABLE: registry for unreachable.example/x:1 cannot be reached"


def test_inspect_image_falls_back_from_containers_to_images(served: Served) -> None:
    served.ctl("pull", "busybox:1")
    r = served.ctl("inspect", "busybox:1")
    assert r.code == 0, r.err
    [doc] = json.loads(r.out)
    assert doc["kind"] == "image"
    assert doc["repoTags"] == ["busybox:1"]
    assert doc["config"]["labels"] == {"k": "v"}
    assert doc["layers"][0]["chainId"] == LAYER_A


def test_inspect_of_nothing_is_not_found(served: Served) -> None:
    r = served.ctl("inspect", "nope")
    assert r.code == 125
    assert "enginectl: NOT_FOUND: image 'nope' not found" in r.err


def test_rmi_of_a_last_tag_deletes_the_image(served: Served) -> None:
    img = served.engine.pull("docker.io/library/busybox:1")
    r = served.ctl("rmi", "docker.io/library/busybox:1", "missing:1")
    assert r.code == 125
    assert f"Deleted: {img.id}" in r.out
    assert "Untagged: docker.io/library/busybox:1" in r.out
    assert "enginectl: NOT_FOUND: image 'missing:1' not found" in r.err
    assert served.engine.calls == [f"remove {img.id}"]
    assert served.engine.images == {}


def test_rmi_of_one_of_two_tags_only_untags(served: Served) -> None:
    img = served.engine.pull("docker.io/library/busybox:1")
    served.engine.images[img.id] = dataclasses.replace(
        img, repo_tags=("docker.io/library/busybox:1", "docker.io/library/busybox:2"))
    r = served.ctl("rmi", "docker.io/library/busybox:2")
    assert r.code == 0, r.err
    assert r.out == "Untagged: docker.io/library/busybox:2\n"
    assert served.engine.calls == ["untag docker.io/library/busybox:2"]
    assert img.id in served.engine.images


def test_save_then_load_round_trip_in_chunks(served: Served, tmp_path: Path) -> None:
    img = served.engine.pull("busybox:1")
    archive = tmp_path / "out.tar"
    r = served.ctl("save", "-o", str(archive), "busybox:1")
    assert r.code == 0, r.err
    data = archive.read_bytes()
    assert data.startswith(b"TAR") and len(data) > 3 << 20  # more than one chunk
    assert img.id.encode() in data
    r = served.ctl("load", "-i", str(archive))
    assert r.code == 0, r.err
    assert r.out == "Loaded image: loaded:1\n"
    assert served.engine.loaded == [data]
    assert list(served.spool.iterdir()) == []  # nothing left in the daemon's spool


def test_save_of_a_missing_image_writes_nothing(served: Served, tmp_path: Path) -> None:
    archive = tmp_path / "out.tar"
    r = served.ctl("save", "-o", str(archive), "missing:1")
    assert r.code == 125
    assert "NOT_FOUND" in r.err
    assert list(tmp_path.iterdir()) == []


def test_load_of_a_bad_archive_is_invalid_argument(served: Served, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"junk")
    r = served.ctl("load", "-i", str(bad))
    assert r.code == 125
    assert "INVALID_ARGUMENT: archive" in r.err
    assert list(served.spool.iterdir()) == []
    missing = served.ctl("load", "-i", str(tmp_path / "none.tar"))
    assert missing.code == 125 and "cannot read" in missing.err


def test_graph_tree_and_json(served: Served) -> None:
    served.engine.pull("busybox:1")
    served.engine.pull("busybox:2")
    r = served.ctl("graph")
    assert r.code == 0, r.err
    assert r.out.splitlines() == [
        "└─ aaaaaaaaaaaa 2.5MB  shared by 2 images",
        "   └─ bbbbbbbbbbbb 20B  busybox:1",
        "2 layers, 2.5MB unpacked"]
    roots = json.loads(served.ctl("graph", "-o", "json").out)
    assert roots[0]["children"][0]["tops"] == ["busybox:1"]
    assert len(roots[0]["usedBy"]) == 2
