"""Our libcontainer's process side.

`init(spec, sync)` runs in a fork of the pod monitor (see engine.execdriver.native): join or
unshare namespaces, fork the container init (pid 1 of a new PID namespace; the monitor moves
it into its cgroup meanwhile), prepare its rootfs, report {"pid"} then {"ready"} on the sync
socket, wait for "S", exec. With a TTY, exec sessions get a pty of the container's own
devpts (engine.execdriver.ttyexec).

`exec_in(spec, pid=, process=)` and `sandbox(dir, hostname=, sysctls=)` run in forks of the
monitor too: one more process in a running container; the pod's namespaces.

Imports only the standard library and engine modules that do.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import termios
from collections.abc import Mapping, Sequence

from engine.cgroups.detect import manager
from engine.errors import InvalidArgument
from engine.execdriver import nsinit, ttyexec, userns
from engine.execdriver.base import ExecProcess
from engine.execdriver.seccomp import program
from engine.execdriver.spec import IDMapping, InitSpec
from engine.sys import linux as L
from engine.sys.real import LinuxSyscalls

SYS = LinuxSyscalls()


def _send(sock: socket.socket, **msg: object) -> None:
    sock.sendall(json.dumps(msg).encode() + b"\n")


def _join_namespaces(paths: dict[str, str]) -> None:
    fds = {t: os.open(p, os.O_RDONLY | os.O_CLOEXEC) for t, p in paths.items()}
    try:
        for t in ("user", "ipc", "uts", "net", "pid", "cgroup", "mnt"):
            if t in fds:
                SYS.setns(fds[t], L.NAMESPACE_FLAGS[t])
    finally:
        for fd in fds.values():
            os.close(fd)


def _exec(spec: InitSpec, *, args: tuple[str, ...], env: tuple[str, ...],
          sync: socket.socket | None, bpf: list[tuple[int, int, int, int]] | None = None
          ) -> None:
    path = nsinit.find_executable(args[0], env)
    if spec.seccomp is not None:
        bpf = bpf or program(spec.seccomp)
        if not spec.no_new_privileges and "CAP_SYS_ADMIN" not in spec.capabilities.effective:
            SYS.prctl(L.PR_SET_NO_NEW_PRIVS, 1)
        SYS.seccomp_load(bpf)
    if sync is not None:
        os.set_inheritable(sync.fileno(), False)
    os.execve(path, list(args), {k: v for k, _, v in (e.partition("=") for e in env)})


def init(spec: InitSpec, sync: socket.socket) -> int:
    """Called in a fork of the monitor: join/unshare namespaces, fork the container init,
    report its pid, and exit (the monitor, a subreaper, inherits it). The monitor moves the
    init into its cgroup meanwhile (NativeDriver.create)."""
    SYS.prctl(L.PR_SET_DUMPABLE, 0)
    try:
        _join_namespaces({n.type: n.path for n in spec.namespaces if n.path})
        if spec.uid_mappings:
            userns.become_root()
        new = 0
        for n in spec.namespaces:
            if not n.path:
                new |= L.NAMESPACE_FLAGS[n.type]
        SYS.unshare(new)
        # both processes write to `sync`: the init waits until {"pid"} is sent, so the
        # monitor always reads {"pid"} first (and {"console"}/{"ready"} after it)
        gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
    except Exception as e:
        _send(sync, error=f"{type(e).__name__}: {e}")
        return 1
    if pid:
        os.close(gate_r)
        try:
            _send(sync, pid=pid)
        finally:
            os.close(gate_w)
        return 0
    try:
        os.close(gate_w)
        os.read(gate_r, 1)  # EOF once the setup process has reported the pid (or died)
        os.close(gate_r)
        _container_init(spec, sync)
    except BaseException as e:
        try:
            _send(sync, error=str(e) if isinstance(e, OSError | ValueError) or
                  type(e).__module__.startswith("engine") else f"{type(e).__name__}: {e}")
        finally:
            os._exit(127)
    return 127


TIOCSPTLCK, TIOCGPTN = 0x40045431, 0x80045430  # x86_64 <asm-generic/ioctls.h>


def _console() -> int:
    """A pty from the container's own devpts as stdio and controlling terminal; returns
    the master (for the monitor)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)
    return master


def _container_init(spec: InitSpec, sync: socket.socket) -> None:
    os.setsid()
    if spec.hostname and (ns := spec.namespace("uts")) is not None and not ns.path:
        SYS.sethostname(spec.hostname)
    if spec.oom_score_adj:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(spec.oom_score_adj))
    nsinit.prepare_rootfs(spec, SYS)
    nsinit.finish_rootfs(spec, SYS)
    if spec.terminal:
        master = _console()
        socket.send_fds(sync, [json.dumps({"console": True}).encode() + b"\n"], [master])
        os.close(master)
    nsinit.enter_cwd(spec.cwd)
    nsinit.drop_privileges(spec, SYS, last_cap=L.cap_last_cap())
    nsinit.enter_cwd(spec.cwd)
    nsinit.find_executable(spec.args[0], spec.env)
    bpf = program(spec.seccomp) if spec.seccomp is not None else None
    nsinit.close_fds({sync.fileno()})
    _send(sync, ready=True)
    if sync.recv(1) != b"S":
        os._exit(0)  # the monitor gave up on this container before starting it
    # Our parent is now the monitor (the setup process exited; the monitor is a subreaper):
    # if the monitor dies, so does the container, whoever notices it later.
    SYS.prctl(L.PR_SET_PDEATHSIG, signal.SIGKILL)
    _exec(spec, args=spec.args, env=spec.env, sync=sync, bpf=bpf)


def exec_in(spec: InitSpec, *, pid: int, process: ExecProcess) -> int:
    """In a fork of the monitor, stdio on 0-2: join container `pid` (namespaces, cgroup),
    fork the process (it dies with us: PDEATHSIG), wait, return its exit status."""
    SYS.prctl(L.PR_SET_DUMPABLE, 0)
    ns_paths = {}
    for t in ("user", "ipc", "uts", "net", "pid", "mnt"):
        mine, theirs = f"/proc/self/ns/{t}", f"/proc/{pid}/ns/{t}"
        if os.stat(mine).st_ino != os.stat(theirs).st_ino:
            ns_paths[t] = theirs
    if spec.cgroup_path:
        manager().join(spec.cgroup_path, os.getpid())
    _join_namespaces(ns_paths)
    master = slave = -1
    if process.tty:  # the command's terminal comes from the container's devpts
        master, slave = ttyexec.open_pty()
        ttyexec.take_session_terminal(master)
    child = os.fork()
    if child == 0:
        try:
            SYS.prctl(L.PR_SET_PDEATHSIG, signal.SIGKILL)
            if process.tty:
                ttyexec.become_terminal_child(slave)
            nsinit.close_fds(set())
            nsinit.drop_privileges(spec, SYS, last_cap=L.cap_last_cap())
            nsinit.enter_cwd(process.cwd or spec.cwd)
            _exec(spec, args=process.args, env=process.env, sync=None)
        except BaseException as e:
            os.write(2, f"exec failed: {e}\n".encode())
            os._exit(126 if not isinstance(e, InvalidArgument) else 127)
    if process.tty:
        os.close(slave)
        ttyexec.relay(master)
        os.close(master)
    for fd in (0, 1, 2):
        os.close(fd)  # the child holds the stdio; our copies would keep pipes open
    _, status = os.waitpid(child, 0)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def sandbox(ns_dir: str, *, hostname: str, sysctls: dict[str, str], share_pid: bool = False,
            cgroup_path: str = "", uid_mappings: Sequence[IDMapping] = (),
            gid_mappings: Sequence[IDMapping] = (), net_made: bool = False) -> None:
    """In a fork of the monitor: new net/ipc/uts namespaces, hostname, sysctls, lo up, then
    bind-mount the namespaces at <ns_dir>/{net,ipc,uts} so they outlive this process.

    With `net_made`, the network namespace is already pinned at <ns_dir>/net (the daemon
    made it, engine.runtime.netns, with the `net.*` sysctls): it is joined, not made.

    With share_pid, also a PID namespace whose init is a tiny holder process (a PID
    namespace dies with its init; bind-mounting it is not enough), placed in the pod cgroup
    so that removing the pod's cgroup ends it; its namespace is bind-mounted at <ns_dir>/pid.
    Only a process that outlives this one joins the pod cgroup: on cgroup v1 the first
    migration in a while waits for an RCU grace period (~10 ms), for nothing otherwise.

    With mappings, all of them are owned by a new user namespace with those maps, pinned
    at <ns_dir>/user (engine.execdriver.userns).
    """
    if uid_mappings or gid_mappings:
        if cgroup_path:
            manager().join(cgroup_path, os.getpid())
        userns.make_pod_namespaces(
            ns_dir, uids=uid_mappings, gids=gid_mappings, share_pid=share_pid,
            configure=lambda: _pod_settings(hostname=hostname, sysctls=sysctls),
            pid_holder=_pid_holder)
        return
    if net_made:
        _join_namespaces({"net": os.path.join(ns_dir, "net")})
    SYS.unshare((0 if net_made else L.CLONE_NEWNET) | L.CLONE_NEWIPC | L.CLONE_NEWUTS
                | (L.CLONE_NEWPID if share_pid else 0))
    if net_made:
        if hostname:
            SYS.sethostname(hostname)
        write_sysctls(sysctls)  # the daemon set the net.* ones
    else:
        _pod_settings(hostname=hostname, sysctls=sysctls)
    for t in ("ipc", "uts") if net_made else ("net", "ipc", "uts"):
        target = os.path.join(ns_dir, t)
        with open(target, "a"):
            pass
        SYS.mount(f"/proc/self/ns/{t}", target, "", L.MS_BIND)
    if share_pid:
        holder = os.fork()
        if holder == 0:
            _pid_holder()
        if cgroup_path:
            try:
                manager().join(cgroup_path, holder)
            except BaseException:
                os.kill(holder, signal.SIGKILL)  # the monitor (a subreaper) reaps it
                raise
        target = os.path.join(ns_dir, "pid")
        with open(target, "a"):
            pass
        SYS.mount(f"/proc/{holder}/ns/pid", target, "", L.MS_BIND)


def _pod_settings(*, hostname: str, sysctls: dict[str, str]) -> None:
    """Inside the pod's new UTS, IPC and network namespaces: hostname, sysctls, lo up."""
    if hostname:
        SYS.sethostname(hostname)
    write_sysctls(sysctls)
    loopback_up()


def write_sysctls(sysctls: Mapping[str, str]) -> None:
    """Write each `key` (dotted) under /proc/sys, as the calling thread's namespaces see it."""
    for key, value in sysctls.items():
        rel = key.replace(".", "/")
        if ".." in rel.split("/"):
            raise ValueError(f"invalid sysctl {key}")
        with open(f"/proc/sys/{rel}", "w") as f:
            f.write(str(value))


def _pid_holder() -> None:
    """PID 1 of a pod-shared PID namespace: reap orphans until killed."""
    try:
        nsinit.close_fds(set())
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        while True:
            signal.sigwaitinfo({signal.SIGCHLD})
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
    finally:
        os._exit(0)


def loopback_up() -> None:
    """Bring `lo` up in the calling thread's network namespace."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), siocgifflags, req))[1]
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
