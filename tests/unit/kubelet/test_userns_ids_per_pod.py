"""KubeletConfiguration `userNamespaces.idsPerPod`: parsed, validated, and honoured."""
from __future__ import annotations

from pathlib import Path

import pytest

from cri.api import runtime_pb2 as pb
from kubelet_py.cli import build_parser, main
from kubelet_py.errors import ConfigError
from kubelet_py.options import KubeletOptions, options_from_args
from kubelet_py.pods.userns import UserNamespaces
from kubelet_py.pods.userns_range import UsernsError, kubelet_range

from .fakes import run_async
from .test_userns import pod, status

HEADER = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"


def parse(tmp_path: Path, body: str) -> KubeletOptions:
    cfg = tmp_path / "kubelet.yaml"
    cfg.write_text(HEADER + body)
    return options_from_args(build_parser().parse_args(["--config", str(cfg)]))


def test_default_is_65536_with_or_without_a_config_file(tmp_path: Path) -> None:
    assert options_from_args(build_parser().parse_args([])).ids_per_pod == 65536
    assert parse(tmp_path, "maxPods: 10\n").ids_per_pod == 65536
    assert parse(tmp_path, "userNamespaces: {}\n").ids_per_pod == 65536


def test_ids_per_pod_from_the_config_file(tmp_path: Path) -> None:
    assert parse(tmp_path, "userNamespaces:\n  idsPerPod: 131072\n").ids_per_pod == 131072
    joined = build_parser().parse_args(["join", "--server", "https://127.0.0.1:6443",
                                        "--token", "abcdef.0123456789abcdef", "--config",
                                        str(tmp_path / "kubelet.yaml")])
    assert options_from_args(joined).ids_per_pod == 131072


@pytest.mark.parametrize(("value", "message"), [
    ("1000", "idsPerPod must not be less than 65536"),
    ("0", "idsPerPod must not be less than 65536"),
    ("-65536", "idsPerPod must not be less than 65536"),
    ("100000", "idsPerPod must be a multiple of 65536"),
    ("4295032832", "idsPerPod must not be more than 4294967295"),  # 2^32 + 65536
    ("lots", "idsPerPod must be an integer"),
    ("true", "idsPerPod must be an integer"),
])
def test_bad_ids_per_pod_is_refused(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"userNamespaces: .*{message}"):
        parse(tmp_path, f"userNamespaces:\n  idsPerPod: {value}\n")


@pytest.mark.parametrize(("body", "message"), [
    ("userNamespaces: 65536\n", "must be an object"),
    ("userNamespaces:\n  idsPerPods: 65536\n", "unknown field.*idsPerPods"),
])
def test_malformed_user_namespaces_is_refused(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(tmp_path, body)


def test_cli_reports_bad_ids_per_pod_cleanly(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "kubelet.yaml"
    cfg.write_text(HEADER + "userNamespaces:\n  idsPerPod: 100000\n")
    assert main(["--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "kubelet-py: --config" in err and "must be a multiple of 65536" in err


def test_default_range_is_aligned_to_the_block_size() -> None:
    rng = kubelet_range(lookup=lambda name: None, ids_per_pod=4 * 65536)
    assert (rng.first, rng.length) == (4 * 65536, 2**32 - 4 * 65536)


@run_async
async def test_pods_get_blocks_of_ids_per_pod(tmp_path: Path) -> None:
    size = 2 * 65536
    answer = status(("", True))

    async def get() -> pb.StatusResponse:
        return answer

    un = UserNamespaces(id_range=kubelet_range(lookup=lambda name: None, ids_per_pod=size),
                        pods_dir=tmp_path / "pods", max_pods=110, status=get,
                        ids_per_pod=size)
    got = [await un.for_sandbox(pod(uid), "") for uid in "ab"]
    assert [(o.uids[0].host_id, o.uids[0].length) for o in got] == [(size, size),
                                                                    (2 * size, size)]
    assert all(list(o.uids) == list(o.gids) for o in got)
    # A kubelet restarted with another idsPerPod refuses the blocks it cannot honour.
    with pytest.raises(UsernsError, match="wrong user namespace length 131072"):
        UserNamespaces(id_range=kubelet_range(lookup=lambda name: None),
                       pods_dir=tmp_path / "pods", max_pods=110, status=get)
