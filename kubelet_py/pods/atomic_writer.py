"""Volume contents swapped atomically under a directory that stays put (it is bind-mounted
into running containers): the files live in a timestamped `..<time>` directory, `..data`
points at it, and each visible name is a symlink through `..data` (upstream's layout, so
updates such as a refreshed token reach containers that already run)."""
from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

from kubelet_py.errors import KubeletError

DATA = "..data"


class WriteError(KubeletError):
    pass


def _check(rel: str) -> None:
    if not rel or rel.startswith("/") or ".." in Path(rel).parts or rel.startswith(".."):
        raise WriteError(f"volume path {rel!r} escapes the volume")


def write_atomically(directory: Path, files: dict[str, bytes], mode: int, *,
                     now: dt.datetime) -> None:
    """Make `directory` show exactly `files` (relative paths), each with `mode`."""
    for rel in files:
        _check(rel)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("..%Y_%m_%d_%H_%M_%S.%f")
    fresh = directory / stamp
    n = 0
    while fresh.exists():
        n += 1
        fresh = directory / f"{stamp}_{n}"
    fresh.mkdir()
    for rel, data in files.items():
        target = fresh / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.chmod(target, mode)
    link = directory / DATA
    previous = os.readlink(link) if link.is_symlink() else None
    tmp_link = directory / "..data_tmp"
    tmp_link.unlink(missing_ok=True)
    os.symlink(fresh.name, tmp_link)
    os.replace(tmp_link, link)  # the switch: readers see old or new, never a mix
    wanted = {Path(rel).parts[0] for rel in files}
    for name in wanted:
        visible = directory / name
        if not visible.is_symlink():
            _remove(visible)
            os.symlink(f"{DATA}/{name}", visible)
    for entry in directory.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name not in wanted:
            _remove(entry)
    if previous is not None and previous != fresh.name:
        shutil.rmtree(directory / previous, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
