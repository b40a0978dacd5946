"""The monitor zygote on its own: spawning, bad requests, concurrency, death and restart,
fds, lifetime. The monitors here serve empty sandbox dirs (no namespaces, no containers)."""
from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import errors
from engine.shim import protocol as P
from engine.shim.client import MonitorClient, monitor_alive
from engine.shim.spawner import LOG, SOCKET, MonitorSpawner, spawner_for
from tests.harness.prereq import need_root

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def run_root(tmp_path: Path) -> Iterator[Path]:
    """A run root; every monitor spawned under it is shut down afterwards."""
    need_root()
    root = tmp_path / "run"
    root.mkdir()
    yield root
    for pidfile in root.glob(f"*/{P.PIDFILE}"):
        if monitor_alive(pidfile.parent):
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGKILL)
            assert wait_gone(pid)


@pytest.fixture
def spawner(run_root: Path) -> Iterator[MonitorSpawner]:
    sp = MonitorSpawner(run_root)
    yield sp
    sp.close()


def new_dir(root: Path, name: str) -> Path:
    d = root / name
    d.mkdir()
    return d


def raw_request(root: Path, line: bytes) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        dirfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
        try:
            s.connect(f"/proc/self/fd/{dirfd}/{SOCKET}")
        finally:
            os.close(dirfd)
        s.sendall(line)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while chunk := s.recv(4096):
            buf += chunk
    reply = json.loads(buf)
    assert isinstance(reply, dict)
    return reply


def test_spawns_a_listening_detached_monitor_quickly(run_root: Path,
                                                     spawner: MonitorSpawner) -> None:
    spawner.spawn(new_dir(run_root, "warm"))  # starts the zygote (imports: slow)
    d = new_dir(run_root, "s")
    t0 = time.monotonic()
    pid = spawner.spawn(d)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"a spawn took {elapsed:.3f}s"  # ~20 ms unloaded
    assert int((d / P.PIDFILE).read_text()) == pid
    assert monitor_alive(d)
    assert MonitorClient(d).call("ping")["pid"] == pid
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "kpy-monitor"
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ppid, sid = int(fields[1]), int(fields[3])
    assert ppid != spawner.pid and ppid != os.getpid()  # re-parented: outlives the zygote
    assert sid not in (os.getsid(0), os.getsid(spawner.pid))  # a session of its own
    assert os.readlink(f"/proc/{pid}/cwd") == "/"  # pins no sandbox dir (it may host many)


@pytest.mark.parametrize(("line", "kind", "message"), [
    (b"garbage\n", "InvalidArgument", "JSON"),
    (b"[1, 2]\n", "InvalidArgument", "JSON object"),
    (b'{"op": "fly"}\n', "InvalidArgument", "unknown zygote op 'fly'"),
    (b'{"op": "spawn"}\n', "InvalidArgument", "absolute sandbox directory"),
    (b'{"op": "spawn", "dir": "relative/dir"}\n', "InvalidArgument", "absolute"),
    (b'{"op": "spawn", "dir": "/nonexistent/kpy-sandbox"}\n', "NotFound", "does not exist"),
    (b"no newline, then EOF", "InvalidArgument", "one JSON line"),
])
def test_bad_requests_get_a_precise_error_and_the_zygote_keeps_serving(
        run_root: Path, spawner: MonitorSpawner, line: bytes, kind: str,
        message: str) -> None:
    zygote = spawner.call("ping")["pid"]
    reply = raw_request(run_root, line)
    assert reply["ok"] is False and reply["kind"] == kind
    assert message in str(reply["error"])
    assert spawner.spawn(new_dir(run_root, "after")) > 0
    assert spawner.call("ping")["pid"] == zygote


def test_ensure_started_starts_once(run_root: Path, spawner: MonitorSpawner) -> None:
    assert spawner.pid == 0
    pid = spawner.ensure_started()
    assert pid > 0 and spawner.ensure_started() == pid == spawner.call("ping")["pid"]


def test_spawning_into_a_missing_dir_is_not_found(run_root: Path,
                                                  spawner: MonitorSpawner) -> None:
    with pytest.raises(errors.NotFound, match="does not exist"):
        spawner.spawn(run_root / "missing")


def test_an_oversized_request_is_refused(run_root: Path, spawner: MonitorSpawner) -> None:
    spawner.call("ping")
    reply = raw_request(run_root, b"x" * (100 * 1024))
    assert reply["kind"] == "InvalidArgument" and "at most" in str(reply["error"])


def test_concurrent_spawns(run_root: Path, spawner: MonitorSpawner) -> None:
    dirs = [new_dir(run_root, f"c{i}") for i in range(24)]
    pids: dict[Path, int] = {}
    failures: list[BaseException] = []

    def one(d: Path) -> None:
        try:
            pids[d] = spawner.spawn(d)
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=one, args=(d,)) for d in dirs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert len(set(pids.values())) == len(dirs)
    for d, pid in pids.items():
        assert MonitorClient(d).call("ping")["pid"] == pid


def test_a_dead_zygote_is_restarted_and_its_monitors_live_on(
        run_root: Path, spawner: MonitorSpawner) -> None:
    first = new_dir(run_root, "first")
    monitor = spawner.spawn(first)
    zygote = spawner.pid
    os.kill(zygote, signal.SIGKILL)
    assert wait_gone(zygote)
    second = new_dir(run_root, "second")
    assert spawner.spawn(second) > 0
    assert spawner.pid not in (0, zygote)
    assert alive(monitor) and MonitorClient(first).call("ping")["pid"] == monitor
    assert MonitorClient(second).call("ping")


def test_a_zygote_that_cannot_start_is_a_precise_error(run_root: Path) -> None:
    broken = MonitorSpawner(run_root, command=("/bin/sh", "-c", "echo no python here >&2",
                                               "zygote"))
    try:
        with pytest.raises(errors.Unavailable,
                           match=r"zygote died .* restart failed too .*no python here"):
            broken.spawn(new_dir(run_root, "s"))
    finally:
        broken.close()


def test_a_stale_socket_is_replaced(run_root: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dirfd = os.open(run_root, os.O_PATH | os.O_DIRECTORY)
    stale.bind(f"/proc/self/fd/{dirfd}/{SOCKET}")  # bound, never listening: connect refused
    os.close(dirfd)
    sp = MonitorSpawner(run_root)
    try:
        assert sp.spawn(new_dir(run_root, "s")) > 0
    finally:
        sp.close()
        stale.close()


def test_the_zygote_exits_when_engined_goes_and_monitors_stay(run_root: Path) -> None:
    sp = MonitorSpawner(run_root)
    d = new_dir(run_root, "s")
    monitor = sp.spawn(d)
    zygote = sp.pid
    sp.close()  # what engined's exit does: the pipe to the zygote reaches EOF
    assert wait_gone(zygote)
    assert "engined is gone" in (run_root / LOG).read_text()
    assert alive(monitor) and MonitorClient(d).call("ping")["pid"] == monitor


def test_the_zygote_ends_with_its_last_owner(run_root: Path) -> None:
    class Owner:
        pass

    first, second = Owner(), Owner()
    sp = spawner_for(run_root, owner=first)
    assert spawner_for(run_root, owner=second) is sp
    sp.spawn(new_dir(run_root, "s"))
    zygote = sp.pid
    del first
    gc.collect()
    assert alive(zygote)
    del second
    gc.collect()
    assert wait_gone(zygote)


def test_no_fd_of_the_zygote_reaches_a_monitor(run_root: Path,
                                               spawner: MonitorSpawner) -> None:
    d = new_dir(run_root, "s")
    monitor = spawner.spawn(d)
    zygote = spawner.pid
    theirs = {os.readlink(f"/proc/{zygote}/fd/{fd}") for fd in os.listdir(f"/proc/{zygote}/fd")
              if int(fd) > 2}
    assert theirs  # the zygote's listening socket and its pipe from engined
    deadline = time.monotonic() + 60
    while True:  # the spawn connection is closed just after the reply
        fds = {int(fd): os.readlink(f"/proc/{monitor}/fd/{fd}")
               for fd in os.listdir(f"/proc/{monitor}/fd")}
        if len(fds) <= 7 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert fds[0] == fds[1] == "/dev/null"
    assert fds[2] == str(d / "monitor.log")
    rest = sorted(target.split(":")[0] for fd, target in fds.items() if fd > 2)
    # its own: the listening monitor.sock, the epoll selector, the signal wakeup pipe
    assert rest == ["anon_inode", "pipe", "pipe", "socket"], fds
    assert not (theirs & set(fds.values())), fds
    with contextlib.suppress(FileNotFoundError):
        listening = Path("/proc/net/unix").read_text()
        inode = next(t for t in fds.values() if t.startswith("socket:"))[8:-1]
        assert any(line.split()[-2] == inode and line.split()[-1].endswith("/" + P.SOCKET)
                   for line in listening.splitlines())


def test_a_monitor_answers_a_garbage_line_precisely(run_root: Path,
                                                    spawner: MonitorSpawner) -> None:
    d = new_dir(run_root, "s")
    pid = spawner.spawn(d)
    client = MonitorClient(d, timeout=10)
    for line, message in ((b"garbage\n", "one JSON object per line"),
                          (b'{"op": "fly"}\n', "unknown monitor op 'fly'")):
        sock = client.connect()
        try:
            sock.sendall(line)
            with pytest.raises(errors.InvalidArgument, match=message):
                client.read_reply(sock, "raw")
        finally:
            sock.close()
    assert client.call("ping")["pid"] == pid


def spares(root: Path) -> list[int]:
    """Spare monitors of the zygote of `root`: named kpy-monitor, still logging to
    zygote.log (a monitor that took a sandbox logs to its monitor.log)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == "kpy-monitor" and \
                        os.readlink(f"/proc/{entry}/fd/2") == str(root / LOG):
                    out.append(int(entry))
    return out


def wait_spare(root: Path, *, other_than: int = 0) -> int:
    deadline = time.monotonic() + 60
    while not (found := [p for p in spares(root) if p != other_than]):
        assert time.monotonic() < deadline, "no spare monitor"
        time.sleep(0.01)
    assert len(found) == 1, found
    return found[0]


def test_a_spare_monitor_takes_the_next_sandbox_and_is_replaced(
        run_root: Path, spawner: MonitorSpawner) -> None:
    spawner.ensure_started()
    spare = wait_spare(run_root)
    d = new_dir(run_root, "s")
    assert spawner.spawn(d) == spare  # no fork on the way
    assert MonitorClient(d).call("ping")["pid"] == spare
    assert os.readlink(f"/proc/{spare}/fd/2") == str(d / "monitor.log")
    assert wait_spare(run_root, other_than=spare) != spare  # the next one is ready


def test_a_dead_spare_is_replaced_by_a_fork_and_spares_end_with_the_zygote(
        run_root: Path) -> None:
    sp = MonitorSpawner(run_root)
    try:
        sp.ensure_started()
        spare = wait_spare(run_root)
        os.kill(spare, signal.SIGKILL)
        assert wait_gone(spare)
        d = new_dir(run_root, "s")
        pid = sp.spawn(d)
        assert pid != spare and MonitorClient(d).call("ping")["pid"] == pid
        spare = wait_spare(run_root)
    finally:
        sp.close()  # the zygote exits: its spare, having no sandbox, too
    assert wait_gone(spare)
