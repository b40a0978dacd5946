from __future__ import annotations

from pathlib import Path

import pytest

from kubelet_py.cli import build_parser, main
from kubelet_py.errors import ConfigError
from kubelet_py.options import options_from_args


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return options_from_args(build_parser().parse_args(list(argv)))


def test_defaults_match_upstream_names() -> None:
    o = parse()
    assert o.max_pods == 110 and o.port == 10250 and o.healthz_port == 10248
    assert o.runtime_request_timeout == 120.0 and o.register_node


def test_config_file_fills_defaults_and_flags_win(tmp_path: Path) -> None:
    cfg = tmp_path / "kubelet.yaml"
    cfg.write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                   "maxPods: 50\nclusterDNS: [10.96.0.10]\nstaticPodPath: /etc/static\n"
                   "runtimeRequestTimeout: 30s\nport: 11250\nevictionHard: {}\n")
    o = parse("--config", str(cfg), "--port", "12250")
    assert o.max_pods == 50
    assert o.cluster_dns == ("10.96.0.10",)
    assert o.pod_manifest_path == Path("/etc/static")
    assert o.runtime_request_timeout == 30.0
    assert o.port == 12250  # the command line wins


@pytest.mark.parametrize("text,match", [
    ("kind: Pod\n", "not a KubeletConfiguration"),
    ("apiVersion: v0\nkind: KubeletConfiguration\n", "apiVersion"),
    ("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
     "maxPods: many\n", "maxPods"),
    ("[", "not YAML"),
])
def test_bad_config_file(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "kubelet.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        parse("--config", str(cfg))


def test_cli_reports_config_error_cleanly(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 1
    assert "kubelet-py: --config" in capsys.readouterr().err


def test_nothing_to_run_is_a_clear_error(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--root-dir", str(tmp_path), "--container-runtime-endpoint",
               f"unix://{tmp_path}/none.sock"])
    assert rc == 1
    assert "nothing to run" in capsys.readouterr().err


def test_bad_flags() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--node-labels", "novalue"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--runtime-request-timeout", "soon"])


def test_flags_before_and_after_join() -> None:
    o = parse("--root-dir", "/tmp/a", "--max-pods", "7", "join", "--server", "https://x:6443",
              "--token", "abcdef.0123456789abcdef", "--max-pods", "9")
    assert o.root_dir == Path("/tmp/a")  # kept from before the subcommand
    assert o.max_pods == 9  # repeated after it: wins
    assert o.port == 10250  # never given: the default
