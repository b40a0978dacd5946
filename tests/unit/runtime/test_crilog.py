from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from engine.shim.crilog import MAX_LINE, CriLogWriter, timestamp


def _clock() -> Iterator[int]:
    n = 1_700_000_000_000_000_000
    while True:
        n += 1500
        yield n


def _writer(path: Path) -> CriLogWriter:
    ticks = _clock()
    return CriLogWriter(path, clock=lambda: next(ticks))


def test_timestamp_is_rfc3339_nano_utc() -> None:
    assert timestamp(1_700_000_000_000_000_042) == "2023-11-14T22:13:20.000000042Z"


def test_lines_streams_and_partial_tail(tmp_path: Path) -> None:
    log = _writer(tmp_path / "c" / "0.log")
    log.write("stdout", b"hel")
    log.write("stdout", b"lo\nwor")
    log.write("stderr", b"oops\n")
    log.write("stdout", b"ld\nlast")
    log.close()
    lines = [line.split(" ", 3)[1:] for line in
             (tmp_path / "c" / "0.log").read_text().splitlines()]
    assert lines == [["stdout", "F", "hello"], ["stderr", "F", "oops"],
                     ["stdout", "F", "world"], ["stdout", "P", "last"]]


def test_long_line_split_at_16k(tmp_path: Path) -> None:
    log = _writer(tmp_path / "0.log")
    log.write("stdout", b"a" * (MAX_LINE * 2 + 5) + b"\n" + b"b" * MAX_LINE + b"\n")
    log.close()
    parts = [line.split(" ", 3)[2:] for line in (tmp_path / "0.log").read_text().splitlines()]
    assert [(t, len(c)) for t, c in parts] == [("P", MAX_LINE), ("P", MAX_LINE), ("F", 5),
                                               ("F", MAX_LINE)]


def test_empty_line_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    log = _writer(path)
    log.write("stdout", b"\n")
    path.rename(tmp_path / "0.log.1")
    log.reopen()
    log.write("stdout", b"after\n")
    log.close()
    assert (tmp_path / "0.log.1").read_text().endswith(" stdout F \n")
    assert path.read_text().endswith(" stdout F after\n")


def test_full_disk_drops_and_counts(tmp_path: Path) -> None:
    log = _writer(Path("/dev/full"))
    log.write("stdout", b"x\ny\n")
    log.close()
    assert log.dropped == 2
