from __future__ import annotations

import pytest

from cri.api import runtime_pb2 as pb
from cri.ctl.cmd_images import rows as image_rows
from cri.ctl.cmd_ps import rows as ps_rows
from cri.ctl.render import ago, human_size, short_id, split_ref, table, with_info

S = 1_000_000_000


@pytest.mark.parametrize(("n", "text"), [(0, "0B"), (999, "999B"), (1000, "1kB"),
                                         (1500, "1.5kB"), (4_270_000, "4.27MB"),
                                         (1_037_880, "1.04MB"), (3 * 10**12, "3TB")])
def test_human_size_is_decimal_like_docker(n: int, text: str) -> None:
    assert human_size(n) == text


@pytest.mark.parametrize(("delta_s", "text"), [(0, "Less than a second ago"),
                                               (1, "1 second ago"), (59, "59 seconds ago"),
                                               (60, "1 minute ago"), (7200, "2 hours ago"),
                                               (86400 * 3, "3 days ago")])
def test_ago(delta_s: int, text: str) -> None:
    assert ago(1000 * S, (1000 + delta_s) * S) == text


def test_ago_of_an_unknown_time() -> None:
    assert ago(0, 5 * S) == "-"


@pytest.mark.parametrize(("ref", "split"), [
    ("registry.k8s.io/pause:3.10", ("registry.k8s.io/pause", "3.10")),
    ("127.0.0.1:5000/busybox", ("127.0.0.1:5000/busybox", "<none>")),
    ("127.0.0.1:5000/busybox:1", ("127.0.0.1:5000/busybox", "1")),
    ("b@sha256:ab", ("b", "sha256:ab"))])
def test_split_ref(ref: str, split: tuple[str, str]) -> None:
    assert split_ref(ref) == split


def test_short_id_drops_the_algorithm() -> None:
    assert short_id("sha256:" + "0123456789abcdef" * 4) == "0123456789ab"
    assert short_id("abcdef", 3) == "abc"


def test_table_pads_columns_and_strips_trailing_space() -> None:
    assert table(["A", "LONGER", "C"], [["xxxx", "y", ""], ["z", "w", "v"]]) == (
        "A      LONGER   C\n"
        "xxxx   y\n"
        "z      w        v\n")


def test_images_rows_one_per_tag_and_none_for_untagged() -> None:
    images = [pb.Image(id="sha256:" + "1" * 64, repo_tags=["r/a:1", "r/a:2"], size=1500),
              pb.Image(id="sha256:" + "2" * 64, repo_digests=["r/b@sha256:" + "f" * 64],
                       size=10)]
    assert image_rows(images) == [["r/b", "<none>", "222222222222", "10B"],
                                  ["r/a", "1", "111111111111", "1.5kB"],
                                  ["r/a", "2", "111111111111", "1.5kB"]]


def test_ps_rows_name_pods_and_order_newest_first() -> None:
    old = pb.Container(id="c" * 64, pod_sandbox_id="p" * 64, created_at=10 * S,
                       metadata=pb.ContainerMetadata(name="old", attempt=2),
                       state=pb.CONTAINER_EXITED, image=pb.ImageSpec(image="busybox"),
                       labels={"io.kubernetes.pod.name": "from-label"})
    new = pb.Container(id="d" * 64, pod_sandbox_id="q" * 64, created_at=50 * S,
                       metadata=pb.ContainerMetadata(name="new"), state=pb.CONTAINER_RUNNING,
                       image=pb.ImageSpec(image="sha256:x", user_specified_image="nginx"))
    assert ps_rows([old, new], {"q" * 64: "web"}, 60 * S) == [
        ["d" * 13, "nginx", "10 seconds ago", "Running", "new", "0", "q" * 13, "web"],
        ["c" * 13, "busybox", "50 seconds ago", "Exited", "old", "2", "p" * 13, "from-label"]]


def test_with_info_decodes_json_values() -> None:
    assert with_info({"id": "x"}, {"info": '{"pid": 4}', "raw": "not json"}) == {
        "id": "x", "info": {"info": {"pid": 4}, "raw": "not json"}}
