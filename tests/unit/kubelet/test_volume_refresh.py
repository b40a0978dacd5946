"""Projected service account tokens renewed at 80% of their lifetime, written through the
`..data` symlink swap so a container's existing bind mount sees the new token."""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

from kubelet_py.pods.atomic_writer import WriteError, write_atomically
from kubelet_py.pods.volumes import Volumes

from .fakes import ManualClock, run_async
from .test_cri_config import ALLOC

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_atomic_writer_swaps_contents_in_place(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    write_atomically(vol, {"token": b"one", "sub/ca.crt": b"CA", "gone": b"x"}, 0o644, now=T0)
    inode = vol.stat().st_ino
    assert (vol / "token").read_bytes() == b"one" and (vol / "sub" / "ca.crt").read_bytes() == b"CA"
    assert os.readlink(vol / "token") == "..data/token"
    write_atomically(vol, {"token": b"two", "sub/ca.crt": b"CA"}, 0o600, now=T0)
    assert vol.stat().st_ino == inode  # the mount point stays the same directory
    assert (vol / "token").read_bytes() == b"two"
    assert os.stat(vol / "token").st_mode & 0o777 == 0o600
    assert not (vol / "gone").exists()
    assert sorted(p.name for p in vol.iterdir() if p.name.startswith("..")) == [
        "..2026_01_01_00_00_00.000000_1", "..data"]  # the old generation is gone
    with pytest.raises(WriteError):
        write_atomically(vol, {"../escape": b""}, 0o644, now=T0)


class TokenApi:
    def __init__(self) -> None:
        self.issued = 0

    async def get(self, path: str, *, params: Any = None) -> dict[str, Any]:
        return {"data": {"ca.crt": "CA"}}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.issued += 1
        return {"spec": {"expirationSeconds": body["spec"]["expirationSeconds"]},
                "status": {"token": f"token-{self.issued}"}}


POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
       "spec": {"volumes": [
           {"name": "scratch", "emptyDir": {}},
           {"name": "access", "projected": {"sources": [
               {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}},
               {"configMap": {"name": "kube-root-ca.crt"}}]}}]}}


@run_async
async def test_token_refreshed_at_80_percent(tmp_path: Path) -> None:
    api, clock = TokenApi(), ManualClock()
    volumes = Volumes(api, root=tmp_path, allocatable=ALLOC, clock=clock)
    prepared = await volumes.prepare(POD)
    token = Path(prepared["access"].host_path) / "token"
    assert token.read_text() == "token-1"
    clock.advance(479)
    assert await volumes.refresh_tokens() == 0 and api.issued == 1
    clock.advance(2)  # 481 s > 0.8 * 600
    assert await volumes.refresh_tokens() == 1
    assert token.read_text() == "token-2"
    assert (token.parent / "ca.crt").read_text() == "CA"
    assert await volumes.refresh_tokens() == 0  # the next one is due 480 s later
    volumes.cleanup("u1")
    clock.advance(600)
    assert await volumes.refresh_tokens() == 0 and api.issued == 2  # pod gone: no renewals
