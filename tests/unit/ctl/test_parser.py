"""enginectl's command line: flags, defaults, and how bad input fails."""
from __future__ import annotations

import socket
import tempfile

import pytest

from cri.ctl.conn import Conn, default_endpoint
from cri.ctl.errors import CtlError
from cri.ctl.main import COMMANDS, build_parser, main


def parse(*argv: str) -> dict[str, object]:
    return vars(build_parser().parse_args(argv))


def test_every_command_has_its_module() -> None:
    assert set(COMMANDS) == {"pull", "images", "rmi", "load", "save", "inspect", "graph",
                             "ps", "logs", "exec", "stop", "rm", "run"}


def test_exec_keeps_the_commands_own_flags() -> None:
    ns = parse("exec", "-it", "abc", "sh", "-c", "ls -l")
    assert (ns["interactive"], ns["tty"], ns["container"], ns["cmd"]) == (
        True, True, "abc", ["sh", "-c", "ls -l"])


def test_run_flags_and_command() -> None:
    ns = parse("run", "--name", "n", "--rm", "-d", "busybox", "echo", "--rm")
    assert (ns["name"], ns["rm"], ns["detach"], ns["image"], ns["cmd"]) == (
        "n", True, True, "busybox", ["echo", "--rm"])
    assert parse("run", "busybox")["network"] == "pod"


def test_logs_defaults() -> None:
    ns = parse("logs", "-f", "--tail", "5", "c1")
    assert (ns["follow"], ns["tail"], ns["container"]) == (True, 5, "c1")
    assert parse("logs", "c1")["tail"] == -1


def test_global_timeout_does_not_clash_with_exec_timeout() -> None:
    ns = parse("--timeout", "7", "exec", "--timeout", "3", "c", "true")
    assert (ns["rpc_timeout"], ns["timeout"]) == (7.0, 3)


def test_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINECTL_ENDPOINT", "unix:///tmp/x.sock")
    assert default_endpoint() == "unix:///tmp/x.sock"
    assert parse("images")["endpoint"] == "unix:///tmp/x.sock"


@pytest.mark.parametrize("argv", [["--bogus", "images"], ["images", "-o", "yaml"],
                                  ["stop", "-t", "x", "c"], ["nosuchcommand"], ["rmi"]])
def test_bad_flags_exit_125(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 125
    assert "enginectl" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 125
    assert "usage: enginectl" in capsys.readouterr().err


def test_a_missing_socket_says_how_to_start_engined(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--endpoint", "unix:///tmp/enginectl-none/engine.sock", "images"]) == 125
    err = capsys.readouterr().err
    assert err.startswith("enginectl: cannot connect to engined at "
                          "unix:///tmp/enginectl-none/engine.sock (no socket at ")
    assert "`make engine`" in err and err.count("\n") == 1


def test_an_endpoint_that_is_not_unix_is_refused() -> None:
    with pytest.raises(CtlError, match="must be unix:///path"):
        Conn("tcp://127.0.0.1:1")
    with pytest.raises(CtlError, match="must be unix:///path"):
        Conn("unix://")


def test_a_stale_socket_says_engined_is_not_running(
        capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="ectl-", dir="/tmp") as d:
        path = f"{d}/dead.sock"
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)  # bound, never listening: what a killed daemon leaves behind
        s.close()
        assert main(["--endpoint", f"unix://{path}", "--timeout", "5", "images"]) == 125
    err = capsys.readouterr().err
    assert err.startswith(f"enginectl: cannot connect to engined at unix://{path}")
    assert "`make engine`" in err
