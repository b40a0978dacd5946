"""RuntimeDefault seccomp (an allow-list) on every exec driver: calls outside the list fail
with EPERM, what busybox and our tests use keeps working, exec sessions are filtered too."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.runtime.api import Runtime
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs, SeccompChoice, SecurityConfig
from tests.integration.runtime.fixtures import (
    DRIVERS,
    rootfs,
    run_to_exit,
    runtime,
    runtime_env,
    sandbox_config,
)

pytestmark = pytest.mark.integration
__all__ = ["rootfs", "runtime", "runtime_env"]  # fixtures

# unshare(CLONE_NEWUSER) needs no capability, so only the filter stops it; keyctl(2) and
# the others have no busybox applet.
OUTSIDE = "unshare -U true; echo rc=$?"


@pytest.fixture(params=DRIVERS)
def handler(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_syscall_outside_the_list_fails_with_eperm(runtime: Runtime, rootfs: Path,
                                                   handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    state, out = run_to_exit(runtime, sid, rootfs, OUTSIDE)
    assert state.exit_code == 0
    assert "Operation not permitted" in out and "rc=1" in out, out
    # the same call without the filter works: the refusal above is seccomp's
    _, out = run_to_exit(runtime, sid, rootfs, OUTSIDE,
                         security=SecurityConfig(seccomp=SeccompChoice("Unconfined")))
    assert "rc=0" in out, out


def test_busybox_keeps_working(runtime: Runtime, rootfs: Path, handler: str) -> None:
    """Processes, files, sockets (raw ping included), personas, priorities, fifos, time."""
    sid = runtime.run_sandbox(sandbox_config(handler))
    script = "; ".join([
        "set -e", "ls -la / > /dev/null", "ps > /dev/null", "id", "date > /dev/null",
        "mkdir -p /tmp/a/b && touch /tmp/a/b/f && mv /tmp/a/b/f /tmp/a/g && rm -r /tmp/a",
        "mkfifo /tmp/p && rm /tmp/p", "ln -s /bin /tmp/l && readlink /tmp/l && rm /tmp/l",
        "echo data | gzip | gunzip > /dev/null", "tar -cf /tmp/t.tar /etc && rm /tmp/t.tar",
        "ping -c 1 -W 2 127.0.0.1 > /dev/null", "linux32 true", "linux64 true",
        "renice -n 1 $$ > /dev/null", "ionice -c 2 -n 3 true", "taskset -p $$ > /dev/null",
        "nproc > /dev/null", "sleep 0.01 & wait", "(echo sub) | cat", "timeout 5 true",
        # busybox nc half-closes once its stdin ends, and a client then quits, maybe before
        # it sent: the listener's stdin is a FIFO this shell keeps open; the client tries
        # until the listener listens (30 s at most), not after a guessed sleep
        "mkfifo /tmp/nc-in && exec 3<>/tmp/nc-in",
        "nc -l -p 9999 -w 30 <&3 > /tmp/nc & i=0; until echo hi | nc -w 1 127.0.0.1 9999 || "
        "[ $i -ge 300 ]; do sleep 0.1; i=$((i + 1)); done; wait", "exec 3>&-",
        "grep -q hi /tmp/nc", "stat / > /dev/null", "df / > /dev/null", "echo all-ok",
    ])
    state, out = run_to_exit(runtime, sid, rootfs, script)
    assert state.exit_code == 0 and "all-ok" in out, out


def test_exec_sessions_are_filtered_too(runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    cid = runtime.create_container(
        sid, ContainerConfig(name="c", command=("/bin/sleep", "30")),
        rootfs=Rootfs(directory=str(rootfs)), image=ImageConfig())
    runtime.start_container(cid)
    try:
        result = runtime.exec_sync(cid, ("/bin/sh", "-c", OUTSIDE), timeout=20)
        assert b"Operation not permitted" in result.stderr and b"rc=1" in result.stdout
        result = runtime.exec_sync(cid, ("/bin/sh", "-c", "grep Seccomp: /proc/self/status"),
                                   timeout=20)
        assert result.stdout.split() == [b"Seccomp:", b"2"]
    finally:
        runtime.stop_container(cid, timeout=0)
