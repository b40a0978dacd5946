"""Trash: a directory is gone from its place at once and deleted soon after."""
from __future__ import annotations

import time
from pathlib import Path

from engine.runtime.trash import Trash


def tree(path: Path) -> Path:
    (path / "a" / "b").mkdir(parents=True)
    (path / "a" / "b" / "f").write_text("x")
    (path / "g").write_text("y")
    return path


def test_discard_moves_at_once_and_deletes_soon(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "removing")
    try:
        victim = tree(tmp_path / "sandbox")
        trash.discard(victim)
        assert not victim.exists()
        deadline = time.monotonic() + 60
        while any((tmp_path / "removing").iterdir()):
            assert time.monotonic() < deadline, "the trash was not emptied"
            time.sleep(0.01)
        trash.discard(tmp_path / "never-was")  # gone already: fine
    finally:
        trash.close()


def test_close_empties_it_and_a_new_one_deletes_what_a_crash_left(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "removing")
    for i in range(5):
        trash.discard(tree(tmp_path / f"s{i}"))
    trash.close()
    assert list((tmp_path / "removing").iterdir()) == []
    tree(tmp_path / "removing" / "left-by-a-crash")
    again = Trash(tmp_path / "removing")
    again.close()
    assert list((tmp_path / "removing").iterdir()) == []
