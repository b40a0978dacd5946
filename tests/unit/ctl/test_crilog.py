from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from cri.ctl.crilog import Entry, Follower, MalformedLine, parse, parse_line, render, tail

TS = b"2026-11-22T10:00:00.123456789Z"


def test_parse_full_and_partial_lines() -> None:
    assert parse_line(TS + b" stdout F hello world") == Entry(TS, "stdout", False,
                                                              b"hello world")
    assert parse_line(TS + b" stderr P part") == Entry(TS, "stderr", True, b"part")
    assert parse_line(TS + b" stdout F") == Entry(TS, "stdout", False, b"")
    assert parse_line(TS + b" stdout F:extra  two  spaces ") == Entry(
        TS, "stdout", False, b" two  spaces ")


@pytest.mark.parametrize("line", [b"", b"garbage", TS + b" stdin F x", TS + b" stdout X x"])
def test_malformed_lines(line: bytes) -> None:
    with pytest.raises(MalformedLine):
        parse_line(line)


def test_rendering_joins_partials_without_newlines() -> None:
    items = parse([TS + b" stdout P ab", TS + b" stdout F cd", TS + b" stderr F e", b"raw"])
    assert [render(i) for i in items] == [("stdout", b"ab"), ("stdout", b"cd\n"),
                                          ("stderr", b"e\n"), ("stdout", b"raw\n")]


def lines(*specs: str) -> list[Entry | bytes]:
    return parse([TS + b" stdout " + s.encode() for s in specs])


def test_tail_counts_a_partial_run_as_one_line() -> None:
    items = lines("F one", "P tw", "P o", "F !", "F three", "P four-unfinished")
    assert [i.content for i in tail(items, 2) if isinstance(i, Entry)] == [
        b"three", b"four-unfinished"]
    assert [i.content for i in tail(items, 3) if isinstance(i, Entry)] == [
        b"tw", b"o", b"!", b"three", b"four-unfinished"]
    assert tail(items, 0) == []
    assert tail(items, -1) == items
    assert tail(items, 99) == items


def entry(text: str, tag: str = "F") -> bytes:
    return TS + f" stdout {tag} {text}\n".encode()


def test_follower_reads_across_rotation_and_stops_when_the_container_does(
        tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_bytes(entry("before") + entry("par", "P"))  # the P line is complete
    steps: list[str] = []

    def sleep(_: float) -> None:  # each poll the "container" does its next thing
        step = len(steps)
        steps.append("poll")
        if step == 0:
            with log.open("ab") as f:
                f.write(entry("tial") + b"2026 stdout F half")  # half a physical line
        elif step == 1:
            with log.open("ab") as f:
                f.write(b"-written\n")
            os.rename(log, tmp_path / "0.log.1")  # the kubelet rotates...
        elif step == 2:
            log.write_bytes(entry("after"))  # ...and ReopenContainerLog makes a new file

    alive = iter([True, True, True, True, False])
    follower = Follower(log, alive=lambda: next(alive), sleep=sleep)
    got = list(follower.lines(start=len(entry("before"))))
    assert got == [entry("par", "P")[:-1], entry("tial")[:-1], b"2026 stdout F half-written",
                   entry("after")[:-1]]


def test_follower_drains_what_was_written_before_the_container_stopped(
        tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_bytes(b"")

    def alive() -> bool:
        with log.open("ab") as f:  # the last words race with the exit status
            f.write(entry("last"))
        return False

    assert list(Follower(log, alive=alive, sleep=lambda s: None).lines()) == [
        entry("last")[:-1]]


def test_follower_waits_for_a_log_that_is_not_there_yet(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    polls = threading.Event()

    def sleep(_: float) -> None:
        if not polls.is_set():
            polls.set()
            log.write_bytes(entry("late"))

    alive = iter([True, False])
    got = list(Follower(log, alive=lambda: next(alive), sleep=sleep).lines())
    assert got == [entry("late")[:-1]]


def test_follower_restarts_a_truncated_file(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_bytes(entry("long line one") + entry("long line two"))
    done: list[int] = []

    def sleep(_: float) -> None:
        if not done:
            done.append(1)
            with log.open("r+b") as f:
                f.truncate(0)
                f.write(entry("x"))

    alive = iter([True, False])
    got = list(Follower(log, alive=lambda: next(alive), sleep=sleep).lines())
    assert got == [entry("long line one")[:-1], entry("long line two")[:-1], entry("x")[:-1]]

