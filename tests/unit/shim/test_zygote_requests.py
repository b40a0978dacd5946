"""The monitor zygote's request handling, without forking: every bad request gets a precise
error line, and the zygote's state is left clean (tests/integration/shim spawns for real)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import errors
from engine.shim import monitor_zygote as Z
from engine.shim.client import check_reply
from engine.shim.monitor import sandbox_dir


@pytest.fixture
def zygote() -> Iterator[Z.Zygote]:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()
    z = Z.Zygote(listener, r)
    yield z
    for conn, _ in z.pending.values():
        conn.close()
    listener.close()
    os.close(r)
    os.close(w)


def ask(z: Z.Zygote, data: bytes) -> dict[str, object]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    z.pending[theirs.fileno()] = (theirs, bytearray())
    ours.sendall(data)
    ours.shutdown(socket.SHUT_WR)
    while theirs.fileno() in z.pending:
        z._readable(theirs.fileno())
    reply = json.loads(ours.recv(65536))
    ours.close()
    assert isinstance(reply, dict)
    return reply


def test_ping_and_modules(zygote: Z.Zygote) -> None:
    assert ask(zygote, b'{"op": "ping"}\n') == {"ok": True, "pid": os.getpid()}
    modules = ask(zygote, b'{"op": "modules"}\n')["modules"]
    assert isinstance(modules, list) and "engine.shim.monitor" in modules


@pytest.mark.parametrize(("data", "kind", "message"), [
    (b"{not json\n", "InvalidArgument", "is a JSON object"),
    (b'"spawn"\n', "InvalidArgument", "is a JSON object"),
    (b'{"op": 7}\n', "InvalidArgument", "unknown zygote op 7"),
    (b'{"op": "spawn", "dir": 3}\n', "InvalidArgument", "absolute sandbox directory, got 3"),
    (b'{"op": "spawn", "dir": "/no/such/kpy-dir"}\n', "NotFound",
     "sandbox directory /no/such/kpy-dir does not exist"),
    (b"", "InvalidArgument", "ended without one"),
])
def test_bad_requests(zygote: Z.Zygote, data: bytes, kind: str, message: str) -> None:
    reply = ask(zygote, data)
    assert reply["ok"] is False and reply["kind"] == kind
    assert message in str(reply["error"])
    assert zygote.pending == {}


def test_a_file_is_not_a_sandbox_dir(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(errors.NotFound):
        sandbox_dir({"dir": str(tmp_path / "f")})
    assert sandbox_dir({"dir": str(tmp_path)}) == tmp_path


def test_error_replies_become_engine_errors() -> None:
    def check(reply: object) -> dict[str, object]:
        return check_reply(reply, who="the monitor zygote")

    with pytest.raises(errors.NotFound, match="gone"):
        check({"ok": False, "kind": "NotFound", "error": "gone"})
    with pytest.raises(errors.EngineError, match="odd"):
        check({"ok": False, "kind": "ValueError", "error": "odd"})  # not an engine error
    with pytest.raises(errors.EngineError, match="the monitor zygote answered"):
        check([1])
    assert check({"ok": True, "pid": 5}) == {"ok": True, "pid": 5}


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert Z.main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_plugging_fills_the_partly_used_pools() -> None:
    """In a fresh interpreter, as the zygote does it (its preload, a collection, then the
    plugs): in pytest's own process, its threads and the garbage of a thousand earlier tests
    free blocks of their own between the plugging and the count."""
    code = textwrap.dedent("""
        import gc, json
        from engine.shim import monitor_zygote as Z

        def free_blocks():
            return sum(avail for size, avail in Z.pool_stats() if size >= 32)

        Z.preload()
        gc.collect()
        sizes = len(Z.pool_stats())
        before = free_blocks()
        plugs = Z.plug_pools()
        after = free_blocks()
        print(json.dumps({"sizes": sizes, "before": before, "after": after,
                          "plugs": len(plugs)}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False, cwd=Path(__file__).parents[3])
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["before"] > 0 and got["sizes"] >= 30, got  # the statistics were read
    assert got["after"] < got["before"] / 4, got
    assert got["plugs"] >= got["before"], got
