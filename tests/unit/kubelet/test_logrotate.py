from __future__ import annotations

from pathlib import Path
from typing import Any

from kubelet_py.pods.logrotate import LogRotator, prune, rotated_files

from .fakes import ManualClock, run_async


class Containers:
    def __init__(self) -> None:
        self.reopened: list[str] = []

    async def reopen_log(self, container_id: str) -> None:
        self.reopened.append(container_id)


class Cri:
    def __init__(self) -> None:
        self.containers = Containers()


def test_prune_keeps_newest(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_text("live")
    for stamp in ("20260101-000001", "20260101-000003", "20260101-000002", "20260101-000004"):
        (tmp_path / f"0.log.{stamp}").write_text(stamp)
    (tmp_path / "1.log.20260101-000000").write_text("other container attempt")
    gone = prune(log, max_files=3)
    assert [p.name for p in gone] == ["0.log.20260101-000001", "0.log.20260101-000002"]
    assert [p.name for p in rotated_files(log)] == ["0.log.20260101-000003",
                                                    "0.log.20260101-000004"]
    assert (tmp_path / "1.log.20260101-000000").exists()


@run_async
async def test_rotate_when_over_size(tmp_path: Path) -> None:
    cri: Any = Cri()
    clock = ManualClock()
    rot = LogRotator(cri, clock=clock, max_size=10, max_files=2)
    log = tmp_path / "0.log"
    log.write_text("small")
    assert not await rot.rotate_container("c1", log)
    for i in range(3):
        log.write_text("x" * 20 + str(i))
        clock.advance(1)
        assert await rot.rotate_container("c1", log)
    assert cri.containers.reopened == ["c1"] * 3
    assert not log.exists()  # the runtime recreates it on reopen
    kept = rotated_files(log)
    assert len(kept) == 1 and kept[0].read_text().endswith("2")
