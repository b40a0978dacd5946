from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from kubelet_py.server.auth import request_attributes, user_from_peercert
from kubelet_py.server.http import log_options
from kubelet_py.server.logs import LogError, LogOptions, parse_line, select, stream_log

from .fakes import run_async

LOG = (b"2026-01-01T00:00:01.123456789Z stdout F one\n"
       b"2026-01-01T00:00:02.000000000Z stderr P par\n"
       b"2026-01-01T00:00:02.500000000Z stderr F tial\n"
       b"2026-01-01T00:00:03Z stdout F three\n"
       b"garbage\n")


def lines() -> list:  # type: ignore[type-arg]
    return [ln for ln in map(parse_line, LOG.splitlines(keepends=True)) if ln is not None]


def test_parse_line() -> None:
    first = parse_line(LOG.splitlines(keepends=True)[0])
    assert first is not None
    assert first.time == dt.datetime(2026, 1, 1, 0, 0, 1, 123456, tzinfo=dt.UTC)
    assert (first.stream, first.partial, first.text) == ("stdout", False, b"one")
    assert parse_line(b"garbage\n") is None
    assert len(lines()) == 4


def test_tail_counts_full_lines() -> None:
    assert [ln.text for ln in select(lines(), LogOptions(tail_lines=2))] == [
        b"par", b"tial", b"three"]
    assert [ln.text for ln in select(lines(), LogOptions(tail_lines=1))] == [b"three"]
    assert select(lines(), LogOptions(tail_lines=0)) == []
    assert len(select(lines(), LogOptions(tail_lines=99))) == 4


def test_since() -> None:
    since = dt.datetime(2026, 1, 1, 0, 0, 2, 400000, tzinfo=dt.UTC)
    assert [ln.text for ln in select(lines(), LogOptions(since=since))] == [b"tial", b"three"]


async def collect(path: Path, options: LogOptions) -> bytes:
    return b"".join([chunk async for chunk in stream_log(path, options)])


@run_async
async def test_stream_render_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(LOG)
    assert await collect(path, LogOptions()) == b"one\npartial\nthree\n"
    stamped = await collect(path, LogOptions(timestamps=True, tail_lines=1))
    assert stamped == b"2026-01-01T00:00:03Z three\n"
    assert await collect(path, LogOptions(limit_bytes=6)) == b"one\npa"
    with pytest.raises(LogError):
        await collect(tmp_path / "missing.log", LogOptions())


@run_async
async def test_follow_until_container_stops(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(LOG[:44])
    state = {"running": True}

    async def running() -> bool:
        return state["running"]

    got: list[bytes] = []

    async def follow() -> None:
        async for chunk in stream_log(path, LogOptions(follow=True), running=running):
            got.append(chunk)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    with path.open("ab") as f:
        f.write(b"2026-01-01T00:00:09Z stdout F later\n")
    await asyncio.sleep(0.5)
    state["running"] = False
    await asyncio.wait_for(task, 30)
    assert got == [b"one\n", b"later\n"]


def test_request_attributes() -> None:
    assert request_attributes("GET", "/containerLogs/ns/p/c") == ("get", ("proxy",))
    assert request_attributes("GET", "/pods") == ("get", ("pods", "proxy"))
    assert request_attributes("GET", "/healthz") == ("get", ("healthz", "proxy"))
    assert request_attributes("GET", "/stats/summary") == ("get", ("stats",))
    assert request_attributes("POST", "/exec/ns/p/c") == ("create", ("proxy",))


def test_user_from_peercert() -> None:
    cert = {"subject": ((("organizationName", "system:masters"),),
                        (("commonName", "kube-apiserver-kubelet-client"),))}
    user = user_from_peercert(cert)
    assert user is not None
    assert user.name == "kube-apiserver-kubelet-client"
    assert user.groups == ("system:masters",)
    assert user_from_peercert(None) is None
    assert user_from_peercert({}) is None


def test_log_options_parsing() -> None:
    opts = log_options({"tailLines": "5", "timestamps": "true", "follow": "1"})
    assert (opts.tail_lines, opts.timestamps, opts.follow) == (5, True, True)
    since = log_options({"sinceTime": "2026-01-01T00:00:00Z"}).since
    assert since == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert log_options({"sinceSeconds": "60"}).since is not None
    with pytest.raises(ValueError, match="tailLines"):
        log_options({"tailLines": "ten"})


def _lines(*texts: str, second: int = 0) -> bytes:
    return b"".join(f"2026-01-01T00:00:{second + i:02d}Z stdout F {t}\n".encode()
                    for i, t in enumerate(texts))


@run_async
async def test_reads_across_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    (tmp_path / "0.log.20260101-000000.000001").write_bytes(_lines("a", "b"))
    (tmp_path / "0.log.20260101-000010.000001").write_bytes(_lines("c", "d", second=10))
    path.write_bytes(_lines("e", second=20))
    assert await collect(path, LogOptions()) == b"a\nb\nc\nd\ne\n"
    assert await collect(path, LogOptions(tail_lines=3)) == b"c\nd\ne\n"
    assert await collect(path, LogOptions(tail_lines=1)) == b"e\n"
    assert await collect(path, LogOptions(tail_lines=9)) == b"a\nb\nc\nd\ne\n"
    since = dt.datetime(2026, 1, 1, 0, 0, 11, tzinfo=dt.UTC)
    assert await collect(path, LogOptions(since=since)) == b"d\ne\n"


@run_async
async def test_follow_moves_on_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(_lines("first"))
    state = {"running": True}

    async def running() -> bool:
        return state["running"]

    got: list[bytes] = []

    async def follow() -> None:
        async for chunk in stream_log(path, LogOptions(follow=True), running=running):
            got.append(chunk)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    with path.open("ab") as f:
        f.write(_lines("before-rename", second=1))
    rotated = tmp_path / "0.log.20260101-000002.000000"
    path.rename(rotated)
    with rotated.open("ab") as f:  # the runtime writes on until it reopens
        f.write(_lines("after-rename", second=2))
    path.write_bytes(_lines("new-file", second=3))
    await asyncio.sleep(0.6)
    state["running"] = False
    await asyncio.wait_for(task, 30)
    assert got == [b"first\n", b"before-rename\n", b"after-rename\n", b"new-file\n"]
