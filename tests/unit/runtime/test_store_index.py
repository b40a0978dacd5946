"""The store's in-memory index: the same answers as the disk, states and monitor lives
learnt from the kernel (inotify, pidfds) the moment they change."""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import InvalidArgument, NotFound
from engine.execdriver.spec import InitSpec
from engine.runtime.live import LiveState
from engine.runtime.spec import ContainerConfig, ImageConfig, SandboxConfig
from engine.runtime.state import ContainerState, write_state
from engine.runtime.status import SandboxStatus, Status
from engine.runtime.store import ContainerRecord, SandboxRecord, Store
from engine.runtime.watch import Changes, ChangeWatch
from engine.shim import protocol as P


def sandbox(store: Store, *, ready: bool = True) -> str:
    sid = secrets.token_hex(32)
    store.save_sandbox(SandboxRecord(
        id=sid, config=SandboxConfig(name=sid[:6], namespace="n", uid=sid[:8]), created_at=1,
        cgroup_path=f"kpy/{sid}", driver="native",
        state=(SandboxStatus.READY if ready else SandboxStatus.NOTREADY).value))
    return sid


def container(store: Store, sid: str, *, status: Status | None = Status.CREATED) -> str:
    cid = secrets.token_hex(32)
    store.container_dir(sid, cid).mkdir(parents=True)
    store.save_container(ContainerRecord(
        id=cid, sandbox_id=sid, config=ContainerConfig(name=cid[:6]), image=ImageConfig(),
        spec=InitSpec(id=cid, rootfs="/", args=("sh",)), log_path="/l", created_at=1))
    if status is not None:
        write_state(P.state_path(store.sandbox_dir(sid), cid),
                    ContainerState(status=status, pid=7, created_at=1))
    return cid


def exit_on_disk(store: Store, sid: str, cid: str, code: int = 3) -> None:
    """What a monitor does when a container exits: rewrite its state file."""
    path = P.state_path(store.sandbox_dir(sid), cid)
    write_state(path, ContainerState(status=Status.EXITED, pid=7, created_at=1,
                                     exit_code=code, finished_at=2))


def as_on_disk(run_root: Path) -> tuple[list[SandboxRecord], list[tuple[ContainerRecord,
                                                                      ContainerState]]]:
    """Everything a fresh store (a daemon restart) reads from the disk."""
    fresh = Store(run_root)
    try:
        return fresh.sandboxes(), [(r, fresh.state(r)) for r in fresh.containers()]
    finally:
        fresh.close()


def as_indexed(store: Store) -> tuple[list[SandboxRecord], list[tuple[ContainerRecord,
                                                                     ContainerState]]]:
    return store.sandboxes(), [(r, store.state(r)) for r in store.containers()]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "run")
    yield s
    s.close()


@pytest.fixture
def monitor() -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line passes for a pod monitor."""
    proc = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()",
                             "engine.shim.monitor-test"])
    while b"engine.shim.monitor" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
        time.sleep(0.005)
    yield proc
    proc.kill()
    proc.wait()


def test_the_index_matches_the_disk_through_create_exit_remove(store: Store,
                                                               tmp_path: Path) -> None:
    sids = [sandbox(store) for _ in range(3)]
    cids = [container(store, sid) for sid in sids for _ in range(2)]
    assert as_indexed(store) == as_on_disk(tmp_path / "run")
    write_state(P.state_path(store.sandbox_dir(sids[0]), cids[0]),
                ContainerState(status=Status.RUNNING, pid=7, created_at=1, started_at=2))
    exit_on_disk(store, sids[1], cids[2])
    assert as_indexed(store) == as_on_disk(tmp_path / "run")
    store.remove_container_dir(sids[0], cids[1])
    store.remove_sandbox_dir(sids[2])
    assert as_indexed(store) == as_on_disk(tmp_path / "run")
    assert store.container_ids() == sorted([cids[0], cids[2], cids[3]],
                                           key=lambda c: (store.sandbox_of(c), c))
    assert store.container_ids(sids[1]) == sorted(cids[2:4])
    with pytest.raises(NotFound):
        store.load_container(cids[1])
    with pytest.raises(NotFound):
        store.load_sandbox(sids[2])


def test_a_restart_recovers_everything(store: Store, tmp_path: Path) -> None:
    sid = sandbox(store)
    cid = container(store, sid, status=Status.RUNNING)
    exit_on_disk(store, sid, cid, code=9)
    again = Store(tmp_path / "run")
    try:
        assert again.sandbox_ids() == [sid]
        assert again.load_container(cid) == store.load_container(cid)
        assert again.state(again.load_container(cid)).exit_code == 9
        exit_on_disk(again, sid, cid, code=10)  # the recovered one is watched too
        assert again.state(again.load_container(cid)).exit_code == 10
    finally:
        again.close()


def test_a_state_written_by_the_monitor_shows_at_the_next_read(store: Store) -> None:
    sid = sandbox(store)
    cid = container(store, sid, status=Status.RUNNING)
    rec = store.load_container(cid)
    assert store.state(rec).status is Status.RUNNING  # now kept in memory
    seen: list[float] = []

    def reader() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if store.state(rec).status is Status.EXITED:
                seen.append(time.monotonic())
                return
            time.sleep(0.001)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.05)
    wrote = time.monotonic()
    exit_on_disk(store, sid, cid)
    t.join()
    assert seen and seen[0] - wrote < 1.0
    assert store.state(rec).exit_code == 3


def test_the_generation_grows_with_every_change_and_only_then(store: Store) -> None:
    sid = sandbox(store)
    cid = container(store, sid, status=Status.RUNNING)
    store.state(store.load_container(cid))
    gen = store.sync()
    assert store.sync() == gen  # nothing happened
    exit_on_disk(store, sid, cid)
    gen2 = store.sync()
    assert gen2 > gen
    container(store, sid)
    assert store.sync() > gen2


def test_a_monitor_exit_is_seen_through_its_pidfd(store: Store,
                                                  monitor: subprocess.Popen[bytes]) -> None:
    sid = sandbox(store)
    (store.sandbox_dir(sid) / P.PIDFILE).write_text(str(monitor.pid))
    assert store.monitor_alive(sid)
    gen = store.sync()
    monitor.kill()
    monitor.wait()
    deadline = time.monotonic() + 60
    while store.monitor_alive(sid):
        assert time.monotonic() < deadline, "the monitor's exit was not seen within 60 s"
        store.sync()
    assert store.sync() > gen


def test_a_sandbox_being_made_is_asked_again_until_its_monitor_runs(
        store: Store, monitor: subprocess.Popen[bytes]) -> None:
    sid = sandbox(store, ready=False)  # run(): the record first, then the monitor
    assert not store.monitor_alive(sid)
    (store.sandbox_dir(sid) / P.PIDFILE).write_text(str(monitor.pid))
    assert store.monitor_alive(sid)


def test_a_stopped_sandbox_keeps_its_gone_monitor_without_asking(tmp_path: Path) -> None:
    checks: list[Path] = []

    def check(d: Path) -> bool:
        checks.append(d)
        return False

    store = Store(tmp_path / "run", live=LiveState(ChangeWatch(), check=check))
    try:
        sid = sandbox(store)
        for _ in range(5):
            assert not store.monitor_alive(sid)
        assert len(checks) == 1
    finally:
        store.close()


class BlindWatch(ChangeWatch):
    """A watch that can watch nothing (inotify and pidfds unavailable)."""

    def watch_dir(self, key: str, path: Path) -> bool:
        return False

    def watch_pid(self, key: str, pid: int) -> int:
        return -1

    def poll(self) -> Changes:
        return Changes()


def test_without_a_watch_every_read_goes_to_disk(tmp_path: Path,
                                                 monitor: subprocess.Popen[bytes]) -> None:
    store = Store(tmp_path / "run", live=LiveState(BlindWatch()))
    try:
        sid = sandbox(store)
        (store.sandbox_dir(sid) / P.PIDFILE).write_text(str(monitor.pid))
        cid = container(store, sid, status=Status.RUNNING)
        rec = store.load_container(cid)
        assert store.state(rec).status is Status.RUNNING and store.monitor_alive(sid)
        gen = store.sync()
        assert store.sync() > gen  # nothing can be kept: no view may be reused
        exit_on_disk(store, sid, cid)
        assert store.state(rec).status is Status.EXITED
        monitor.kill()
        monitor.wait()
        assert not store.monitor_alive(sid)
    finally:
        store.close()


def test_lost_events_drop_every_kept_state(store: Store) -> None:
    class Overflowing(ChangeWatch):
        overflow = False

        def poll(self) -> Changes:
            return Changes(overflow=True) if self.overflow else super().poll()

    watch = Overflowing()
    live = LiveState(watch)
    s = Store(store.root.parent, live=live)
    try:
        sid = sandbox(s)
        cid = container(s, sid, status=Status.RUNNING)
        rec = s.load_container(cid)
        assert s.state(rec).status is Status.RUNNING
        path = P.state_path(s.sandbox_dir(sid), cid)
        watch.unwatch_dir(cid)  # the write below would go unseen...
        write_state(path, ContainerState(status=Status.EXITED, created_at=1))
        assert s.state(rec).status is Status.RUNNING
        watch.overflow = True  # ...but the kernel said it dropped events
        assert s.state(rec).status is Status.EXITED
    finally:
        s.close()


def test_concurrent_verbs_and_reads_stay_consistent(store: Store, tmp_path: Path) -> None:
    sids = [sandbox(store) for _ in range(4)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def churn(sid: str) -> None:
        try:
            for _ in range(25):
                cid = container(store, sid, status=Status.RUNNING)
                exit_on_disk(store, sid, cid)
                store.remove_container_dir(sid, cid)
            for _ in range(3):
                container(store, sid, status=Status.RUNNING)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def read() -> None:
        try:
            while not stop.is_set():
                for rec in store.containers():
                    try:
                        store.state(rec)
                        store.resolve_container(rec.id[:20])
                    except NotFound:
                        pass  # removed meanwhile
                store.sync()
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(3)]
    writers = [threading.Thread(target=churn, args=(sid,)) for sid in sids]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert as_indexed(store) == as_on_disk(tmp_path / "run")
    assert len(store.containers()) == 12


def test_ids_prefixes_and_bad_ids(store: Store) -> None:
    sid = sandbox(store)
    cid = container(store, sid)
    assert store.resolve_container(cid[:10]) == cid
    assert store.resolve_sandbox(sid[:10]) == sid
    with pytest.raises(NotFound):
        store.resolve_container("")
    with pytest.raises(InvalidArgument):
        store.load_container("../x")
    with pytest.raises(NotFound, match="sandbox"):
        store.save_container(ContainerRecord(
            id="c" * 64, sandbox_id="nope", config=ContainerConfig(name="c"),
            image=ImageConfig(), spec=InitSpec(id="c", rootfs="/", args=("sh",)),
            log_path="/l", created_at=1))


def test_close_releases_the_watch(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        s = Store(tmp_path / "run")
        container(s, sandbox(s))
        s.close()
    assert len(os.listdir("/proc/self/fd")) <= before


def test_a_directory_removed_behind_our_back_is_read_from_disk_again(store: Store) -> None:
    sid = sandbox(store)
    cid = container(store, sid, status=Status.RUNNING)
    rec = store.load_container(cid)
    assert store.state(rec).status is Status.RUNNING
    shutil.rmtree(store.container_dir(sid, cid))  # the kernel drops the watch with it
    assert store.state(rec).status is Status.UNKNOWN
    gen = store.sync()
    assert store.sync() > gen  # nothing about it can be kept any more
