"""engined's command line: flags, defaults and refusals."""
from __future__ import annotations

from pathlib import Path

import pytest

from cri.daemon import build_parser, options_from_args
from engine.networkdriver.cni import DEFAULT_BIN_DIRS


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return options_from_args(build_parser().parse_args(list(argv)))


def test_defaults() -> None:
    options = parse()
    assert options.engine.listen == "unix:///run/kubelet-py/engine.sock"
    assert options.cni_bin_dirs == DEFAULT_BIN_DIRS
    assert (options.exec_driver, options.graph_driver) == ("native", "overlay")


def test_flags() -> None:
    options = parse("--listen", "unix:///tmp/x.sock", "--cni-bin-dir", "/a", "--cni-bin-dir",
                    "/b", "--exec-driver", "runc", "--graph-driver", "vfs",
                    "--registry-hosts", "/m.yaml", "--shutdown-grace", "0")
    assert options.cni_bin_dirs == (Path("/a"), Path("/b"))
    assert options.exec_driver == "runc" and options.graph_driver == "vfs"
    assert options.registry_hosts == Path("/m.yaml") and options.shutdown_grace_s == 0


@pytest.mark.parametrize("argv", [["--listen", "tcp://127.0.0.1:1"],
                                  ["--shutdown-grace", "-1"], ["--config", "/e.yaml"],
                                  ["--exec-driver", "lxc"]])
def test_refusals(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)
