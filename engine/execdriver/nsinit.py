"""The container init sequence, written against the Syscalls seam (unit-tested with a fake).

Order matters and is the contract the tests check:
  mounts (rootfs bind, the spec's mounts, devices) -> pivot_root -> masked/read-only paths
  -> read-only rootfs -> resolve executable and cwd -> capabilities bounding drop -> user
  (groups, gid, uid, keeping caps) -> final capability sets -> no_new_privs. Seccomp is
  loaded last by the caller, right before execve.
"""
from __future__ import annotations

import contextlib
import os
import stat

from engine.errors import InvalidArgument
from engine.execdriver import mountattr, mountopts
from engine.execdriver.spec import Device, InitSpec, MountPoint
from engine.sys import caps
from engine.sys import linux as L
from engine.sys.base import Syscalls

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def prepare_rootfs(spec: InitSpec, sys: Syscalls) -> None:
    """Everything up to and including pivot_root; run in the new mount namespace."""
    propagation = mountopts.root_propagation(m.options for m in spec.mounts)
    sys.mount("", "/", "", mountopts.PROPAGATION[propagation])
    rootfs = os.path.realpath(spec.rootfs)
    if propagation == "rshared":
        # The root stays shared with the host so bidirectional volumes keep their peer
        # group; the mount holding the rootfs goes private, or every mount made below
        # (the rootfs bind, /proc, /dev...) would show up on the host too.
        with open("/proc/self/mountinfo") as f:
            parent, shared = mountopts.mount_point_of(rootfs, f.read())
        if shared:
            sys.mount("", parent, "", L.MS_PRIVATE)
    sys.mount(rootfs, rootfs, "", L.MS_BIND | L.MS_REC)
    for m in spec.mounts:
        mount_one(rootfs, m, sys=sys)
    if not spec.privileged:
        for dev in spec.devices:
            if spec.uid_mappings:  # no mknod inside a user namespace: the host's node
                bind_device(rootfs, dev, sys=sys)
            else:
                make_device(rootfs, dev)
        make_dev_links(rootfs)
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.chdir(rootfs)
        sys.pivot_root(".", ".")
        # Stand on the old root by its fd (what "." names after pivot_root(".", ".") is not
        # a documented promise), make it a slave so detaching it cannot unmount anything on
        # the host, and detach it: the new root's own mounts keep their propagation.
        os.fchdir(old_root)
        sys.mount("", ".", "", L.MS_SLAVE | L.MS_REC)
        sys.umount2(".", L.MNT_DETACH)
    finally:
        os.close(old_root)
    os.chdir("/")


def mount_one(rootfs: str, m: MountPoint, *, sys: Syscalls) -> None:
    target = mountopts.secure_target(rootfs, m.destination)
    flags, propagation, data = mountopts.parse(m.options)
    if m.type == "bind" or flags & L.MS_BIND:
        if not os.path.exists(m.source):
            raise InvalidArgument(f"bind mount source {m.source} does not exist")
        _make_target(target, directory=os.path.isdir(m.source))
        sys.mount(m.source, target, "", L.MS_BIND | (flags & L.MS_REC))
        rest = flags & ~(L.MS_BIND | L.MS_REC)
        if rest:
            sys.mount("", target, "", L.MS_REMOUNT | L.MS_BIND | rest)
    else:
        _make_target(target, directory=True)
        sys.mount(m.source, target, m.type, flags, data)
    if propagation:
        sys.mount("", target, "", propagation)
    if mountopts.RECURSIVE_READONLY in m.options:
        mountattr.make_recursively_readonly(target)


def _make_target(target: str, *, directory: bool) -> None:
    if os.path.lexists(target):
        return
    if directory:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass


def make_device(rootfs: str, dev: Device) -> None:
    path = mountopts.secure_target(rootfs, dev.path)
    if os.path.lexists(path):
        os.unlink(path)
    kind = stat.S_IFCHR if dev.type == "c" else stat.S_IFBLK
    os.mknod(path, kind | dev.mode, os.makedev(dev.major, dev.minor))
    os.chmod(path, dev.mode)


def bind_device(rootfs: str, dev: Device, *, sys: Syscalls) -> None:
    """The host's device node `dev.path` bind-mounted at the same path in the rootfs."""
    path = mountopts.secure_target(rootfs, dev.path)
    if os.path.lexists(path):
        os.unlink(path)
    with open(path, "a"):
        pass
    sys.mount(dev.path, path, "", L.MS_BIND)


def make_dev_links(rootfs: str) -> None:
    dev = mountopts.secure_target(rootfs, "/dev")
    links = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore"}
    for name, target in links.items():
        path = os.path.join(dev, name)
        if not os.path.lexists(path):
            os.symlink(target, path)


def finish_rootfs(spec: InitSpec, sys: Syscalls) -> None:
    """After pivot_root: masked and read-only paths, read-only rootfs."""
    for path in spec.masked_paths:
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path):
            sys.mount("tmpfs", path, "tmpfs", L.MS_RDONLY, "size=0k")
        else:
            sys.mount("/dev/null", path, "", L.MS_BIND)
    for path in spec.readonly_paths:
        if not os.path.lexists(path):
            continue
        sys.mount(path, path, "", L.MS_BIND | L.MS_REC)
        sys.mount("", path, "", L.MS_REMOUNT | L.MS_BIND | L.MS_RDONLY | L.MS_NOSUID
                  | L.MS_NODEV | L.MS_NOEXEC)
    if spec.readonly_rootfs:
        sys.mount("", "/", "", L.MS_REMOUNT | L.MS_BIND | L.MS_RDONLY)


def env_value(env: tuple[str, ...], key: str) -> str | None:
    for item in env:
        k, _, v = item.partition("=")
        if k == key:
            return v
    return None


def find_executable(args0: str, env: tuple[str, ...]) -> str:
    """Resolve the command like execvp does, in the (already pivoted) root."""
    if "/" in args0:
        candidates = [args0]
    else:
        path = env_value(env, "PATH") or DEFAULT_PATH
        candidates = [os.path.join(d or ".", args0) for d in path.split(":")]
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    if "/" in args0:
        raise InvalidArgument(f"exec: {args0!r}: no such executable file in the container")
    raise InvalidArgument(f"exec: {args0!r}: executable file not found in $PATH")


def enter_cwd(cwd: str) -> None:
    try:
        os.makedirs(cwd, exist_ok=True)
        os.chdir(cwd)
    except OSError as e:
        raise InvalidArgument(f"working directory {cwd}: {e.strerror}") from e


def drop_privileges(spec: InitSpec, sys: Syscalls, *, last_cap: int) -> None:
    c = spec.capabilities
    bounding = caps.to_mask(c.bounding)
    for nr in range(last_cap + 1):
        if not bounding & (1 << nr):
            sys.prctl(L.PR_CAPBSET_DROP, nr)
    sys.prctl(L.PR_SET_KEEPCAPS, 1)
    u = spec.user
    os.setgroups(list(u.additional_gids))
    os.setresgid(u.gid, u.gid, u.gid)
    os.setresuid(u.uid, u.uid, u.uid)
    sys.prctl(L.PR_SET_KEEPCAPS, 0)
    sys.capset(caps.to_mask(c.effective), caps.to_mask(c.permitted),
               caps.to_mask(c.inheritable))
    sys.prctl(L.PR_CAP_AMBIENT, L.PR_CAP_AMBIENT_CLEAR_ALL)
    for name in c.ambient:
        sys.prctl(L.PR_CAP_AMBIENT, 2, caps.CAPABILITIES[caps.normalize(name)])  # RAISE
    if spec.no_new_privileges:
        sys.prctl(L.PR_SET_NO_NEW_PRIVS, 1)


def close_fds(keep: set[int]) -> None:
    """Close every fd but stdio and `keep` (a listing of /proc/self/fd, not a range guess)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
