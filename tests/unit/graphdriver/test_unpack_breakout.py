"""containerd's breakout cases, ported: no layer entry may touch anything outside the layer.

Every case applies a hostile tar to `root/` next to `outside/canary` and then checks that the
canary's content, mode, owner, link count and times, and the listing of `outside/` and of
the test directory, are exactly as before, whether the apply succeeded or was refused.
"""
from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.errors import EngineError, InvalidArgument
from engine.graphdriver.unpack import Whiteouts, apply_layer
from tests.unit.graphdriver.tarmaker import Tar

Case = Callable[[str], Tar]  # gets the absolute path of outside/


CASES: dict[str, tuple[Case, type[Exception] | None]] = {
    "absolute path": (lambda out: Tar().file(f"{out}/canary", b"pwned"), None),
    "dot-dot path": (lambda out: Tar().file("../outside/canary", b"pwned"), None),
    "deep dot-dot": (lambda out: Tar().file("a/../../../../../.." + out + "/canary", b"p"), None),
    "dot-dot in the middle": (lambda out: Tar().dir("a").file("a/../../outside/x", b"p"), None),
    "symlink (absolute) then write through it": (
        lambda out: Tar().symlink("link", out).file("link/canary", b"pwned"), InvalidArgument),
    "symlink (relative) then write through it": (
        lambda out: Tar().symlink("link", "../outside").file("link/canary", b"pwned"),
        InvalidArgument),
    "symlink to a dir inside, then write": (
        lambda out: Tar().dir("real").symlink("link", "/real/../../real")
        .file("link/canary", b"ok"), None),
    "symlink to root then write": (
        lambda out: Tar().symlink("r", "/").file(f"r{out}/canary", b"pwned"), None),
    "symlink chain then write": (
        lambda out: Tar().symlink("a", "b").symlink("b", "../../../" + out)
        .file("a/canary", b"pwned"), InvalidArgument),
    "symlink to the canary then file over it": (
        lambda out: Tar().symlink("f", f"{out}/canary").file("f", b"pwned", mode=0o777), None),
    "symlink to the canary then dir over it": (
        lambda out: Tar().symlink("f", f"{out}/canary").dir("f", mode=0o777), None),
    "hardlink to outside (absolute)": (
        lambda out: Tar().hardlink("h", f"{out}/canary"), InvalidArgument),
    "hardlink to outside (dot-dot)": (
        lambda out: Tar().hardlink("h", "../outside/canary"), InvalidArgument),
    "hardlink through a symlinked dir": (
        lambda out: Tar().symlink("l", out).hardlink("h", "l/canary"), InvalidArgument),
    "hardlink to a symlink to outside then write": (
        lambda out: Tar().symlink("s", f"{out}/canary").hardlink("h", "s")
        .file("h", b"pwned"), None),
    "directory replaced by a symlink": (
        lambda out: Tar().dir("d").file("d/ok", b"1").symlink("d", out)
        .file("d/canary", b"pwned"), InvalidArgument),
    "whiteout .wh..": (lambda out: Tar().file(".wh..", b""), InvalidArgument),
    "whiteout .wh...": (lambda out: Tar().file(".wh...", b""), InvalidArgument),
    "nested whiteout .wh...": (lambda out: Tar().dir("a").file("a/.wh...", b""), InvalidArgument),
    "whiteout of a symlink": (
        lambda out: Tar().symlink("s", f"{out}/canary").file(".wh.s", b""), None),
    "whiteout through a symlinked dir": (
        lambda out: Tar().symlink("s", out).file("s/.wh.canary", b""), InvalidArgument),
    "opaque dir through a symlink": (
        lambda out: Tar().symlink("s", out).file("s/.wh..wh..opq", b""), InvalidArgument),
    "chmod through a symlinked dir entry": (
        lambda out: Tar().symlink("s", out).dir("s", mode=0o777), None),
    "file below a file": (lambda out: Tar().file("f", b"1").file("f/x", b"2"), InvalidArgument),
}


def snapshot(base: Path) -> object:
    canary = base / "outside" / "canary"
    st = canary.lstat()
    return (canary.read_bytes(), st.st_mode, st.st_uid, st.st_nlink, st.st_mtime_ns,
            sorted(os.listdir(base)), sorted(os.listdir(base / "outside")),
            os.stat(base / "outside").st_mode)


MODES = [pytest.param(Whiteouts.DELETE, id="delete"),
         pytest.param(Whiteouts.OVERLAY, id="overlay", marks=pytest.mark.integration)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_breakout(tmp_path: Path, name: str, mode: Whiteouts) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "canary").write_bytes(b"canary")
    os.chmod(tmp_path / "outside" / "canary", 0o644)
    (tmp_path / "root").mkdir()
    before = snapshot(tmp_path)
    make, expected = CASES[name]
    data = make(str(tmp_path / "outside")).bytes()
    if expected is None:
        apply_layer(str(tmp_path / "root"), io.BytesIO(data), whiteouts=mode)
    else:
        with pytest.raises(expected):
            apply_layer(str(tmp_path / "root"), io.BytesIO(data), whiteouts=mode)
    assert snapshot(tmp_path) == before


def test_errors_are_engine_errors(tmp_path: Path) -> None:
    with pytest.raises(EngineError):
        apply_layer(str(tmp_path), io.BytesIO(Tar().file(".wh..", b"").bytes()),
                    whiteouts=Whiteouts.DELETE)
