"""engined's command line: flags, defaults and refusals."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cri.daemon import build_parser, options_from_args  # re-exported by the daemon
from engine.networkdriver.cni import DEFAULT_BIN_DIRS


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return options_from_args(build_parser().parse_args(list(argv)))


def test_defaults() -> None:
    options = parse()
    assert options.engine.listen == "unix:///run/kubelet-py/engine.sock"
    assert options.cni_bin_dirs == DEFAULT_BIN_DIRS
    assert (options.exec_driver, options.graph_driver) == ("native", "overlay")
    assert options.pods_per_monitor == 8


def test_flags() -> None:
    options = parse("--listen", "unix:///tmp/x.sock", "--cni-bin-dir", "/a", "--cni-bin-dir",
                    "/b", "--exec-driver", "runc", "--graph-driver", "vfs",
                    "--registry-hosts", "/m.yaml", "--shutdown-grace", "0",
                    "--pods-per-monitor", "1")
    assert options.cni_bin_dirs == (Path("/a"), Path("/b"))
    assert options.exec_driver == "runc" and options.graph_driver == "vfs"
    assert options.registry_hosts == Path("/m.yaml") and options.shutdown_grace_s == 0
    assert options.pods_per_monitor == 1


@pytest.mark.parametrize("argv", [["--listen", "tcp://127.0.0.1:1"],
                                  ["--shutdown-grace", "-1"], ["--config", "/nonexistent.yaml"],
                                  ["--exec-driver", "lxc"], ["--pods-per-monitor", "0"],
                                  ["--pods-per-monitor", "many"]])
def test_refusals(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


def test_config_file_sets_what_flags_do_and_flags_win(tmp_path: Path) -> None:
    config = tmp_path / "engined.yaml"
    config.write_text("root: /srv/engine\nrun_root: /run/e\nlisten: unix:///run/e.sock\n"
                      "cni_bin_dirs: [/opt/a, /opt/b]\nexec_driver: runc\n"
                      "registry_hosts: mirrors.yaml\nshutdown_grace: 2\n"
                      "pods_per_monitor: 4\n")
    options = parse("--config", str(config), "--exec-driver", "crun")
    assert options.engine.root == Path("/srv/engine")
    assert options.engine.run_root == Path("/run/e")
    assert options.engine.listen == "unix:///run/e.sock"
    assert options.engine.config_file == config
    assert options.cni_bin_dirs == (Path("/opt/a"), Path("/opt/b"))
    assert options.exec_driver == "crun"  # the flag wins over the file
    assert options.registry_hosts == tmp_path / "mirrors.yaml"  # relative to the file
    assert options.shutdown_grace_s == 2.0
    assert options.pods_per_monitor == 4
    assert options.graph_driver == "overlay"  # neither: the default


def test_empty_config_file_means_defaults(tmp_path: Path) -> None:
    config = tmp_path / "empty.yaml"
    config.write_text("")
    options = parse("--config", str(config))
    assert options.engine.config_file == config
    without_file = dataclasses.replace(
        options, engine=dataclasses.replace(options.engine, config_file=None))
    assert without_file == parse()


@pytest.mark.parametrize(("text", "message"), [
    ("rootdir: /x\n", "unknown setting(s) rootdir"),
    ("exec_driver: lxc\n", "exec_driver must be one of"),
    ("shutdown_grace: soon\n", "shutdown_grace must be a number"),
    ("cni_bin_dirs: []\n", "cni_bin_dirs must be a path or a list of paths"),
    ("listen: tcp://127.0.0.1:1\n", "listen must be unix:///path"),
    ("pods_per_monitor: 0\n", "pods_per_monitor must be a whole number of at least 1"),
    ("pods_per_monitor: 2.5\n", "pods_per_monitor must be a whole number of at least 1"),
    ("- a\n- b\n", "must be a mapping of settings"),
    ("root: [unclosed\n", "is not valid YAML"),
])
def test_bad_config_files_are_refused_with_the_key(tmp_path: Path, text: str,
                                                   message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(SystemExit) as exc:
        parse("--config", str(config))
    assert message in str(exc.value)
