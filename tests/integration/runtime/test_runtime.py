"""Runtime features beyond the driver conformance: exec streams, port-forward, resources,
stats, logs, sandbox files and sysctls, recovery."""
from __future__ import annotations

import hashlib
import os
import select
import sys
import time
from pathlib import Path

import pytest

from engine.cgroups.base import Resources
from engine.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound
from engine.graphdriver.base import Mount
from engine.runtime.api import Runtime
from engine.runtime.attach import AttachSession
from engine.runtime.exec import MAX_OUTPUT
from engine.runtime.spec import ContainerConfig, DNSConfig, ImageConfig, Rootfs
from engine.runtime.status import SandboxStatus
from tests.integration.runtime.fixtures import (
    log_text,
    need_cgroup_v1,
    rootfs,
    run_to_exit,
    runtime,
    runtime_env,
    sandbox_config,
)

pytestmark = pytest.mark.integration
__all__ = ["rootfs", "runtime", "runtime_env"]


def _running(rt: Runtime, sid: str, rootfs: Path, *command: str, **kw: object) -> str:
    config = ContainerConfig(name=f"c{time.monotonic_ns()}", command=command,
                             **kw)  # type: ignore[arg-type]
    cid = rt.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                              image=ImageConfig())
    rt.start_container(cid)
    return cid


def _read_until(fd: int, needle: bytes, timeout: float = 10) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        assert left > 0, buf
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf


def test_sandbox_files_sysctls_and_hostname(runtime: Runtime, rootfs: Path) -> None:
    dns = DNSConfig(servers=("10.0.0.10",), searches=("ns.svc.cluster.local",),
                    options=("ndots:5",))
    sid = runtime.run_sandbox(sandbox_config(
        "native", dns=dns, sysctls={"net.ipv4.ip_unprivileged_port_start": "80"}))
    assert runtime.sandbox_status(sid).status is SandboxStatus.READY
    _, out = run_to_exit(runtime, sid, rootfs,
                         "cat /etc/resolv.conf; hostname; cat /etc/hostname; "
                             "cat /proc/sys/net/ipv4/ip_unprivileged_port_start")
    assert out.splitlines() == ["nameserver 10.0.0.10", "search ns.svc.cluster.local",
                                "options ndots:5", "testpod", "testpod", "80"]


def test_exec_stream_pipes(runtime: Runtime, rootfs: Path) -> None:
    sid = runtime.run_sandbox(sandbox_config("native"))
    cid = _running(runtime, sid, rootfs, "/bin/sleep", "600")
    session = runtime.exec_stream(cid, ("/bin/sh", "-c", "cat; echo bye >&2"), tty=False)
    try:
        os.write(session.stdin, b"ping\n")
        os.close(session.stdin)
        session.stdin = -1
        assert _read_until(session.stdout, b"ping") == b"ping\n"
        assert _read_until(session.stderr, b"bye") == b"bye\n"
        assert session.wait(timeout=60) == 0
        with pytest.raises(FailedPrecondition):
            session.resize(width=1, height=1)
    finally:
        session.close()


def test_exec_sync_timeout_and_output_cap(runtime: Runtime, rootfs: Path) -> None:
    sid = runtime.run_sandbox(sandbox_config("native"))
    cid = _running(runtime, sid, rootfs, "/bin/sleep", "600")
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        runtime.exec_sync(cid, ("/bin/sleep", "30"), timeout=1)
    assert time.monotonic() - start < 10
    result = runtime.exec_sync(cid, ("/bin/sh", "-c", "yes 0123456789abcde | head -c 17000000"),
                               timeout=60)
    assert result.exit_code == 0 and len(result.stdout) == MAX_OUTPUT


def test_port_forward_into_the_pod_netns(runtime: Runtime, rootfs: Path) -> None:
    sid = runtime.run_sandbox(sandbox_config("native"))
    cid = _running(runtime, sid, rootfs, "/bin/sh", "-c", "nc -l -p 8080 </dev/null")
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = runtime.port_forward(sid, 8080)
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    with conn:
        conn.sendall(b"through-the-netns\n")
    runtime.wait_container(cid, timeout=60)
    assert "through-the-netns" in log_text(runtime, cid)
    host_ns = os.stat("/proc/self/ns/net").st_ino
    assert os.stat(f"/proc/{os.getpid()}/ns/net").st_ino == host_ns  # we never left


def test_update_resources_and_stats(runtime: Runtime, rootfs: Path) -> None:
    need_cgroup_v1()
    sid = runtime.run_sandbox(sandbox_config("native"))
    cid = _running(runtime, sid, rootfs, "/bin/sh", "-c",
                   "dd if=/dev/zero of=/tmp/blob bs=1k count=512 2>/dev/null; "
                   "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 600",
                   resources=Resources(memory_limit=64 << 20, cpu_shares=512, pids_limit=50))
    path = runtime.container_status(cid).record.spec.cgroup_path
    mem = Path("/sys/fs/cgroup/memory") / path
    assert (mem / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert (Path("/sys/fs/cgroup/cpu") / path / "cpu.shares").read_text().strip() == "512"
    assert (Path("/sys/fs/cgroup/pids") / path / "pids.max").read_text().strip() == "50"
    runtime.update_container_resources(cid, Resources(memory_limit=96 << 20,
                                                      cpu_quota=50000, cpu_period=100000))
    assert (mem / "memory.limit_in_bytes").read_text().strip() == str(96 << 20)
    assert (Path("/sys/fs/cgroup/cpu") / path / "cpu.cfs_quota_us").read_text().strip() == \
        "50000"
    deadline = time.monotonic() + 60
    while True:
        stats = runtime.container_stats(cid)
        if stats.writable_layer_bytes >= 512 * 1024 and stats.cgroup.cpu_usage_ns > 0:
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.2)
    assert stats.cgroup.memory_working_set > 0 and stats.cgroup.pids >= 1
    assert runtime.sandbox_stats(sid).cpu_usage_ns >= stats.cgroup.cpu_usage_ns


def test_reopen_log(runtime: Runtime, rootfs: Path) -> None:
    sid = runtime.run_sandbox(sandbox_config("native"))
    cid = _running(runtime, sid, rootfs, "/bin/sh", "-c",
                   "echo one; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo two; sleep 600")
    log = Path(runtime.container_status(cid).record.log_path)
    deadline = time.monotonic() + 60
    while "one" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    log.rename(log.with_suffix(".1"))
    runtime.reopen_container_log(cid)
    runtime.exec_sync(cid, ("touch", "/tmp/go"), timeout=60)
    while "two" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "one" not in log.read_text()


def test_runtime_executable_not_writable_from_inside(runtime: Runtime, rootfs: Path) -> None:
    before = hashlib.sha256(Path(sys.executable).resolve().read_bytes()).hexdigest()
    sid = runtime.run_sandbox(sandbox_config("native"))
    cid = _running(runtime, sid, rootfs, "/bin/sleep", "600")
    session = runtime.exec_stream(cid, ("/bin/sleep", "5"), tty=False)  # a helper is inside
    try:
        result = runtime.exec_sync(cid, ("/bin/sh", "-c",
                                         "for p in /proc/[0-9]*; do "
                                         "(echo x >> $p/exe) 2>/dev/null && echo WROTE $p; "
                                         "done; echo checked"), timeout=30)
    finally:
        session.kill()
        session.wait(60)
        session.close()
    assert result.stdout.strip() == b"checked"
    assert hashlib.sha256(Path(sys.executable).resolve().read_bytes()).hexdigest() == before


def test_state_enum_guards_the_api(runtime: Runtime, rootfs: Path) -> None:
    sid = runtime.run_sandbox(sandbox_config("native"))
    config = ContainerConfig(name="c", command=("/bin/true",))
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=ImageConfig())
    with pytest.raises(FailedPrecondition):
        runtime.exec_sync(cid, ("true",), timeout=5)
    with pytest.raises(FailedPrecondition):
        runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                 image=ImageConfig())
    runtime.remove_container(cid)  # created, never started: removable
    runtime.stop_sandbox(sid)
    assert runtime.sandbox_status(sid).status is SandboxStatus.NOTREADY
    with pytest.raises(FailedPrecondition):
        runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                 image=ImageConfig())
    # the runtime is still usable: the removed container is gone, the sandbox answers
    with pytest.raises(NotFound):
        runtime.container_status(cid)
    assert [c.record.id for c in runtime.list_containers(sid)] == []
    assert runtime.sandbox_status(sid).record.id == sid


def _read_attached(session: AttachSession, needle: bytes, timeout: float = 10) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        assert time.monotonic() < deadline, buf
        if not session.buffered:
            assert select.select([session], [], [], deadline - time.monotonic())[0], buf
        got = session.read()
        if got is None:
            break
        buf += got[1]
    return buf


def test_attach_stdin_pipes_and_stdin_once(runtime: Runtime, rootfs: Path) -> None:
    sid = runtime.run_sandbox(sandbox_config("native"))
    cid = _running(runtime, sid, rootfs, "/bin/sh", "-c", "cat; echo gone >&2",
                   stdin=True, stdin_once=True)
    session = runtime.attach(cid)
    try:
        session.write_stdin(b"hello\n")
        assert _read_attached(session, b"hello") == b"hello\n"
        with pytest.raises(FailedPrecondition):
            session.resize(width=1, height=1)
    finally:
        session.close()  # stdin_once: the first detach closes the container's stdin
    state = runtime.wait_container(cid, timeout=60)
    assert state.exit_code == 0
    assert log_text(runtime, cid).splitlines() == ["hello", "gone"]


def test_attach_tty_resize(runtime: Runtime, rootfs: Path) -> None:
    sid = runtime.run_sandbox(sandbox_config("native"))
    cid = _running(runtime, sid, rootfs, "/bin/sh", stdin=True, tty=True)
    session = runtime.attach(cid)
    try:
        session.resize(width=99, height=33)
        session.write_stdin(b"stty size\n")
        assert b"33 99" in _read_attached(session, b"33 99")
        session.write_stdin(b"exit 3\n")
        assert runtime.wait_container(cid, timeout=60).exit_code == 3
    finally:
        session.close()
    with pytest.raises(FailedPrecondition):
        runtime.attach(cid)


def test_failed_sandbox_leaves_nothing(runtime: Runtime) -> None:
    with pytest.raises(InvalidArgument):
        runtime.run_sandbox(sandbox_config("native", sysctls={"net.ipv4.no_such_knob": "1"}))
    assert runtime.list_sandboxes() == []
    assert list(runtime.ctx.store.root.iterdir()) == []
    with open("/proc/self/mountinfo") as f:
        assert str(runtime.ctx.store.root) not in f.read()


@pytest.mark.parametrize("handler", ["native", "runc"])
def test_shared_pid_namespace(runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler, share_pid=True))
    _running(runtime, sid, rootfs, "/bin/sleep", "600")
    _, out = run_to_exit(runtime, sid, rootfs,
                         "grep -l 600 /proc/[0-9]*/cmdline; echo pid1=$(cat /proc/1/cmdline)")
    assert "/proc/" in out, out  # the other container's sleep is visible
    assert "pid1=" in out and "sleep" not in out.split("pid1=")[1]  # the holder is pid 1
    runtime.remove_sandbox(sid)
    assert not any(p.name == "pid" for p in runtime.ctx.store.root.rglob("ns/*"))


def test_rootfs_from_graphdriver_mounts(runtime: Runtime, rootfs: Path, tmp_path: Path) -> None:
    """A rootfs given as mounts (what a graphdriver returns) is mounted by the runtime,
    its writable layer is the overlay's upperdir, and it is unmounted on removal."""
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    overlay = Mount(type="overlay", source="overlay",
                    options=(f"lowerdir={rootfs}", f"upperdir={upper}", f"workdir={work}"))
    sid = runtime.run_sandbox(sandbox_config("native"))
    config = ContainerConfig(name="c", command=("/bin/sh", "-c",
                                                "echo layer > /written; sleep 600"))
    cid = runtime.create_container(sid, config, rootfs=Rootfs(mounts=(overlay,)),
                                   image=ImageConfig())
    runtime.start_container(cid)
    deadline = time.monotonic() + 60
    while not (upper / "written").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not (rootfs / "written").exists()
    assert runtime.container_stats(cid).writable_layer_bytes > 0
    target = runtime.container_status(cid).record.spec.rootfs
    runtime.stop_container(cid, timeout=0)
    runtime.remove_container(cid)
    with open("/proc/self/mountinfo") as f:
        assert target not in f.read()


def test_concurrent_pods_from_many_threads(runtime: Runtime, rootfs: Path) -> None:
    """The CRI server calls from a thread pool: pods and containers made in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    def pod(i: int) -> int:
        sid = runtime.run_sandbox(sandbox_config("native"))
        cids = [_running(runtime, sid, rootfs, "/bin/sh", "-c", f"exit {i + j}")
                for j in range(2)]
        codes = [runtime.wait_container(c, timeout=30).exit_code for c in cids]
        runtime.remove_sandbox(sid)
        return sum(codes)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(pod, range(4)))
    assert results == [2 * i + 1 for i in range(4)]
    assert runtime.list_sandboxes() == []
