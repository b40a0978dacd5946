"""One conformance suite for every exec driver: native (ours), runc and crun (OCI bundle)."""
from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from engine.errors import DeadlineExceeded, EngineError, FailedPrecondition, InvalidArgument
from engine.execdriver.runc import HYBRID
from engine.runtime.api import Runtime
from engine.runtime.spec import (
    ContainerConfig,
    ImageConfig,
    Rootfs,
    SeccompChoice,
    SecurityConfig,
    VolumeMount,
)
from engine.runtime.status import Status
from engine.sys import caps
from tests.integration.runtime.fixtures import (
    DRIVERS,
    log_text,
    rootfs,
    run_to_exit,
    runtime,
    runtime_env,
    sandbox_config,
)

pytestmark = pytest.mark.integration
__all__ = ["rootfs", "runtime", "runtime_env"]  # fixtures


@pytest.fixture(params=DRIVERS)
def handler(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _status_caps(text: str, field: str) -> int:
    m = re.search(rf"^{field}:\s+([0-9a-f]+)$", text, re.M)
    assert m, text
    return int(m.group(1), 16)


def test_exit_code_logs_and_states(runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    config = ContainerConfig(name="c", command=("/bin/sh", "-c",
                                                "echo out; echo err >&2; printf tail; exit 3"))
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=ImageConfig())
    assert runtime.container_status(cid).state.status is Status.CREATED
    runtime.start_container(cid)
    state = runtime.wait_container(cid, timeout=30)
    assert (state.status, state.exit_code, state.reason) == (Status.EXITED, 3, "Error")
    assert state.created_at <= state.started_at <= state.finished_at
    with pytest.raises(FailedPrecondition):
        runtime.start_container(cid)
    lines = Path(runtime.container_status(cid).record.log_path).read_text().splitlines()
    parsed = [line.split(" ", 3) for line in lines]
    assert sorted((s, t, c) for _, s, t, c in parsed) == [
        ("stderr", "F", "err"), ("stdout", "F", "out"), ("stdout", "P", "tail")]
    for ts, *_ in parsed:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", ts)
    runtime.remove_container(cid)
    assert runtime.list_containers(sid) == []


def test_completed_and_image_config_merge(runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    image = ImageConfig(entrypoint=("/bin/sh", "-c"), cmd=("exit 9",),
                        env=("FROM_IMAGE=1", "OVERRIDE=image"), workdir="/tmp", user="app")
    config = ContainerConfig(name="c", args=('echo "$FROM_IMAGE $OVERRIDE $HOME"; pwd; id',),
                             env=(("OVERRIDE", "request"),))
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=image)
    runtime.start_container(cid)
    state = runtime.wait_container(cid, timeout=30)
    assert (state.exit_code, state.reason) == (0, "Completed")
    assert log_text(runtime, cid).splitlines() == [
        "1 request /home/app", "/tmp", "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)"]


def test_only_stdio_reaches_the_container(runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    state, out = run_to_exit(runtime, sid, rootfs, "ls /proc/1/fd; exit 0")  # sh stays pid 1
    assert state.exit_code == 0
    assert out.split() == ["0", "1", "2"]
    config = ContainerConfig(name="sleeper", command=("/bin/sleep", "600"))
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=ImageConfig())
    runtime.start_container(cid)
    pid = runtime.container_status(cid).state.pid
    deadline = time.monotonic() + 60  # runc's start returns before its init has exec'd
    while not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/bin/sleep"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]


def test_capabilities_masked_paths_and_flags(runtime: Runtime, rootfs: Path,
                                              handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    security = SecurityConfig(add_capabilities=("NET_ADMIN",), drop_capabilities=("CHOWN",),
                              masked_paths=("/proc/keys", "/proc/acpi"),
                              readonly_paths=("/proc/sys",), no_new_privs=True)
    state, out = run_to_exit(
        runtime, sid, rootfs,
        "cat /proc/self/status; echo MOUNTS; cat /proc/self/mounts; echo KEYS; "
        "cat /proc/keys; ls /proc/acpi; echo END", security=security)
    assert state.exit_code == 0, out
    expected = caps.to_mask([c for c in caps.DEFAULT_CAPABILITIES if c != "CAP_CHOWN"]
                            + ["CAP_NET_ADMIN"])
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert _status_caps(out, field) == expected, field
    assert _status_caps(out, "CapInh") == 0
    assert _status_caps(out, "CapAmb") == 0
    assert re.search(r"^NoNewPrivs:\s+1$", out, re.M)
    mounts = {fields[1]: fields[3].split(",") for fields in
              (line.split() for line in out.split("MOUNTS")[1].split("KEYS")[0].splitlines()
               if line.strip())}
    assert "ro" in mounts["/sys"] and "ro" in mounts["/proc/sys"]
    assert {"nosuid", "nodev", "noexec"} <= set(mounts["/proc"])
    assert "ro" in mounts["/proc/acpi"]  # masked dir: a read-only tmpfs
    assert out.split("KEYS")[1].split() == ["END"]  # /proc/keys reads empty, acpi lists none


def test_readonly_rootfs_and_volume(runtime: Runtime, rootfs: Path, tmp_path: Path,
                                    handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in").write_text("hello")
    security = SecurityConfig(readonly_rootfs=True)
    mounts = (VolumeMount(container_path="/data", host_path=str(vol)),
              VolumeMount(container_path="/ro", host_path=str(vol), readonly=True))
    state, out = run_to_exit(
        runtime, sid, rootfs, "cat /data/in; echo; touch /x || echo ROOT-RO; "
        "echo w > /data/out; touch /ro/y || echo VOL-RO", security=security, mounts=mounts)
    assert state.exit_code == 0
    assert out.splitlines()[0] == "hello" and "ROOT-RO" in out and "VOL-RO" in out
    assert (vol / "out").read_text() == "w\n"


def test_seccomp_runtime_default_and_localhost(runtime: Runtime, rootfs: Path, tmp_path: Path,
                                               handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    _, out = run_to_exit(runtime, sid, rootfs, "grep Seccomp: /proc/self/status")
    assert out.split() == ["Seccomp:", "2"]
    profile = tmp_path / "deny-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 13}]}))
    security = SecurityConfig(seccomp=SeccompChoice("Localhost", str(profile)))
    _, out = run_to_exit(runtime, sid, rootfs, "mkdir /tmp/d; echo rc=$?",
                             security=security)
    assert "Permission denied" in out and "rc=1" in out
    _, out = run_to_exit(runtime, sid, rootfs, "grep Seccomp: /proc/self/status",
                         security=SecurityConfig(seccomp=SeccompChoice("Unconfined")))
    assert out.split() == ["Seccomp:", "0"]


def test_empty_localhost_profile_refused(runtime: Runtime, rootfs: Path, tmp_path: Path,
                                         handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    empty = tmp_path / "empty.json"
    empty.write_text("")
    config = ContainerConfig(name="c", command=("/bin/true",), security=SecurityConfig(
        seccomp=SeccompChoice("Localhost", str(empty))))
    with pytest.raises(InvalidArgument, match="empty"):
        runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                 image=ImageConfig())
    assert runtime.list_containers(sid) == []


def test_missing_command_is_a_clear_error(runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    config = ContainerConfig(name="c", command=("no-such-binary",))
    with pytest.raises(EngineError, match="no-such-binary") as err:
        cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                       image=ImageConfig())
        runtime.start_container(cid)
    assert "not found" in str(err.value) or "No such file" in str(err.value)


def test_missing_user_refused(runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    config = ContainerConfig(name="c", command=("/bin/true",),
                             security=SecurityConfig(run_as_username="ghost"))
    with pytest.raises(InvalidArgument, match="ghost"):
        runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                 image=ImageConfig())


def test_workdir_and_mount_target_outside_rootfs_refused(runtime: Runtime, rootfs: Path,
                                                         tmp_path: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    os.symlink("/../../../etc", rootfs / "escape")
    config = ContainerConfig(name="wd", command=("/bin/true",), working_dir="/escape")
    with pytest.raises(InvalidArgument, match="outside"):
        runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                 image=ImageConfig())
    vol = tmp_path / "v"
    vol.mkdir()
    config = ContainerConfig(name="mnt", command=("/bin/true",), mounts=(
        VolumeMount(container_path="/escape/x", host_path=str(vol)),))
    with pytest.raises(InvalidArgument, match="outside"):
        runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                 image=ImageConfig())
    (rootfs / "proc").rmdir()
    os.symlink("/", rootfs / "proc")
    config = ContainerConfig(name="proc", command=("/bin/true",))
    with pytest.raises(InvalidArgument, match="outside"):
        runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                 image=ImageConfig())
    assert not (Path("/etc") / "x").exists()


def test_stop_running_container(runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    config = ContainerConfig(name="c", command=("/bin/sleep", "600"))
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=ImageConfig())
    runtime.start_container(cid)
    assert runtime.container_status(cid).state.status is Status.RUNNING
    with pytest.raises(FailedPrecondition):
        runtime.remove_container(cid)
    runtime.stop_container(cid, timeout=1)
    state = runtime.container_status(cid).state
    # pid 1 of a PID namespace ignores an unhandled SIGTERM: the stop escalates to SIGKILL
    assert state.status is Status.EXITED and state.exit_code == 137
    runtime.remove_container(cid)


def test_exec_sync(runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    config = ContainerConfig(name="c", command=("/bin/sleep", "600"), env=(("X", "y"),))
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=ImageConfig())
    runtime.start_container(cid)
    result = runtime.exec_sync(cid, ("/bin/sh", "-c", "echo $X; hostname; echo e >&2; exit 4"),
                               timeout=30)
    assert (result.exit_code, result.stdout, result.stderr) == (4, b"y\ntestpod\n", b"e\n")
    result = runtime.exec_sync(cid, ("ls", "/proc/self/fd"), timeout=30)
    assert result.stdout.split() == [b"0", b"1", b"2", b"3"]  # 3 = ls's own directory fd


def test_privileged(runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler, privileged=True))
    state, out = run_to_exit(runtime, sid, rootfs,
                             "grep -E '^(CapEff|Seccomp):' /proc/self/status; "
                             "ls /dev/kmsg && echo HOSTDEV; mount | grep ' /sys ' ",
                             security=SecurityConfig(privileged=True))
    assert state.exit_code == 0, out
    assert _status_caps(out, "CapEff") == caps.to_mask(list(caps.current_bounding()))
    assert re.search(r"^Seccomp:\s+0$", out, re.M)
    assert "HOSTDEV" in out
    assert "(rw," in out.split("sysfs")[-1]


def test_tty_container_attach(runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    config = ContainerConfig(name="c", command=("/bin/sh",), tty=True, stdin=True)
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=ImageConfig())
    runtime.start_container(cid)
    session = runtime.attach(cid)
    try:
        session.resize(width=77, height=22)
        session.write_stdin(b"stty size; tty; exit 5\n")
        state = runtime.wait_container(cid, timeout=30)
    finally:
        session.close()
    assert state.exit_code == 5
    out = log_text(runtime, cid)
    assert "22 77" in out and "/dev/pts/" in out


def test_host_namespaces(runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler, host_network=True, host_pid=True,
                                             host_ipc=True))
    _, out = run_to_exit(runtime, sid, rootfs,
                         "for t in net ipc pid mnt; do readlink /proc/self/ns/$t; done")
    net, ipc, pid, mnt = out.split()
    assert (net, ipc, pid) == tuple(os.readlink(f"/proc/self/ns/{t}")
                                    for t in ("net", "ipc", "pid"))
    assert mnt != os.readlink("/proc/self/ns/mnt")  # always a mount namespace of its own


def test_exec_tty_resize(runtime: Runtime, rootfs: Path, handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    config = ContainerConfig(name="c", command=("/bin/sleep", "600"))
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=ImageConfig())
    runtime.start_container(cid)
    session = runtime.exec_stream(cid, ("/bin/sh",), tty=True)
    try:
        session.resize(width=101, height=31)

        def read_until(needle: bytes) -> bytes:
            out = b""
            deadline = time.monotonic() + 60
            while needle not in out:
                assert time.monotonic() < deadline, out
                if select.select([session.stdout], [], [], 0.5)[0]:
                    out += os.read(session.stdout, 4096)
            return out

        read_until(b"# ")  # the shell is up (it queries the cursor; typing earlier races)
        # a relayed size (SIGWINCH) may land a moment later: asked until it shows (30 s at
        # most), then printed (the echoed line never spells it)
        os.write(session.stdin, b'i=0; until [ "$(stty size)" = "$((30 + 1)) $((100 + 1))" ]'
                                b" || [ $i -ge 600 ]; do sleep 0.05; i=$((i + 1)); done;"
                                b" stty size\n")
        read_until(b"31 101")
        os.write(session.stdin, b"exit 7\n")
        assert session.wait(timeout=30) == 7
    finally:
        session.close()


def _bind_self(path: Path, propagation: str) -> None:
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    subprocess.run(["mount", f"--make-{propagation}", str(path)], check=True)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path) + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def test_bidirectional_volume_propagates_both_ways_and_nothing_else_leaks(
        runtime: Runtime, rootfs: Path, tmp_path: Path, handler: str) -> None:
    vol = tmp_path / "vol"
    (vol / "from-host").mkdir(parents=True)
    _bind_self(vol, "rshared")
    try:
        sid = runtime.run_sandbox(sandbox_config(handler, privileged=True))
        config = ContainerConfig(
            name="prop", security=SecurityConfig(privileged=True),
            mounts=(VolumeMount(container_path="/vol", host_path=str(vol),
                                propagation="rshared"),),
            command=("/bin/sh", "-c", "mkdir -p /vol/from-ctr && mount -t tmpfs ctr "
                     "/vol/from-ctr && touch /vol/from-ctr/made-inside; "
                     "grep /vol /proc/self/mountinfo; sleep 60"))
        if handler == "crun" and Path(HYBRID).is_mount():
            # crun runs in a slave mount namespace on hybrid hosts (see RuncDriver)
            with pytest.raises(FailedPrecondition, match="bidirectional"):
                runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                         image=ImageConfig())
            return
        cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                       image=ImageConfig())
        runtime.start_container(cid)
        deadline = time.monotonic() + 60
        while not (vol / "from-ctr" / "made-inside").exists():
            assert runtime.container_status(cid).state.status is Status.RUNNING
            assert time.monotonic() < deadline, (
                f"the container's mount never reached the host: {log_text(runtime, cid)}")
            time.sleep(0.05)
        # host -> container
        subprocess.run(["mount", "-t", "tmpfs", "host", str(vol / "from-host")], check=True)
        (vol / "from-host" / "made-outside").write_text("")
        result = runtime.exec_sync(cid, ("ls", "/vol/from-host"), timeout=60)
        assert result.stdout.split() == [b"made-outside"]
        # the container's own mounts (its rootfs bind, /proc, /dev...) stay in the container
        assert _mounts_under(rootfs) == []
        runtime.stop_container(cid, timeout=0)
    finally:
        subprocess.run(["umount", "-R", "-l", str(vol)], check=False)


def test_recursive_readonly_volume(runtime: Runtime, rootfs: Path, tmp_path: Path,
                                   handler: str) -> None:
    vol = tmp_path / "vol"
    (vol / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "sub", str(vol / "sub")], check=True)
    try:
        sid = runtime.run_sandbox(sandbox_config(handler))
        mounts = (VolumeMount(container_path="/ro", host_path=str(vol), readonly=True),
                  VolumeMount(container_path="/rro", host_path=str(vol), readonly=True,
                              recursive_readonly=True))
        state, out = run_to_exit(
            runtime, sid, rootfs, "touch /ro/sub/a && echo RO-SUB-WRITABLE; "
            "touch /rro/sub/b 2>&1 || echo RRO-SUB-READONLY", mounts=mounts)
        assert state.exit_code == 0, out
        assert "RO-SUB-WRITABLE" in out and "RRO-SUB-READONLY" in out
        assert "Read-only file system" in out
        assert (vol / "sub" / "a").exists() and not (vol / "sub" / "b").exists()
    finally:
        subprocess.run(["umount", "-l", str(vol / "sub")], check=False)


@pytest.mark.parametrize("mount", [
    VolumeMount(container_path="/rro", host_path="/tmp", recursive_readonly=True),
    VolumeMount(container_path="/rro", host_path="/tmp", readonly=True,
                recursive_readonly=True, propagation="rslave"),
])
def test_recursive_readonly_needs_readonly_and_private(runtime: Runtime, rootfs: Path,
                                                       mount: VolumeMount) -> None:
    sid = runtime.run_sandbox(sandbox_config("native"))
    with pytest.raises(InvalidArgument, match="recursive read-only"):
        runtime.create_container(sid, ContainerConfig(name="bad", mounts=(mount,)),
                                 rootfs=Rootfs(directory=str(rootfs)), image=ImageConfig())


def test_exec_sync_timeout_kills_the_command_and_cleans_up(runtime: Runtime, rootfs: Path,
                                                           handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    config = ContainerConfig(name="c", command=("/bin/sleep", "600"))
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=ImageConfig())
    runtime.start_container(cid)
    with pytest.raises(DeadlineExceeded):
        runtime.exec_sync(cid, ("/bin/sleep", "77"), timeout=1)
    deadline = time.monotonic() + 60
    while True:  # the timed-out command must be gone from the container, not just its runtime
        ps = runtime.exec_sync(cid, ("ps", "-o", "args"), timeout=30).stdout.decode()
        if "sleep 77" not in ps:
            break
        assert time.monotonic() < deadline, ps
        time.sleep(0.1)
    runtime.exec_sync(cid, ("true",), timeout=30)
    container_dir = runtime.ctx.store.sandbox_dir(sid) / "containers" / cid
    assert container_dir.is_dir()
    assert not list(container_dir.rglob("exec-*"))  # nothing kept per finished exec


def test_masked_file_cannot_be_executed(runtime: Runtime, rootfs: Path, handler: str) -> None:
    """critest's MaskedPaths spec masks /bin/ls; with a path (busybox-static's sh runs
    applets by name from its own binary, so only a path reaches the masked file)."""
    os.link(rootfs / "bin" / "busybox", rootfs / "bin" / "lsx")  # a hardlink, as in images
    sid = runtime.run_sandbox(sandbox_config(handler))
    state, out = run_to_exit(runtime, sid, rootfs, "/bin/lsx || echo MASKED; cat /bin/lsx | wc -c",
                             security=SecurityConfig(masked_paths=("/bin/lsx",)))
    assert state.exit_code == 0, out
    assert "/bin/lsx: Permission denied" in out and "MASKED" in out
    assert "0" in [line.strip() for line in out.splitlines()]  # reads as /dev/null


def test_exec_runs_as_the_containers_user_and_groups(runtime: Runtime, rootfs: Path,
                                                     handler: str) -> None:
    sid = runtime.run_sandbox(sandbox_config(handler))
    config = ContainerConfig(name="c", command=("/bin/sleep", "600"),
                             security=SecurityConfig(run_as_user=1000,
                                                     supplemental_groups=(4242,)))
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=ImageConfig())
    runtime.start_container(cid)
    result = runtime.exec_sync(cid, ("/bin/sh", "-c", "id -u; id -g; id -G; "
                                     "grep CapEff /proc/self/status"), timeout=30)
    lines = result.stdout.decode().splitlines()
    assert lines[:3] == ["1000", "1000", "1000 2000 4242"], result
    assert lines[3].split()[1] == "0000000000000000"  # a non-root user keeps no capability
