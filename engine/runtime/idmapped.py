"""A container of a pod with its own user namespace sees its rootfs and volumes through
ID-mapped mounts (engine.sys.idmap), made here on the host side before the driver runs, so
native, runc and crun get the same, already mapped, paths:

- an overlay rootfs: each lower layer is ID-mapped (overlayfs takes a private clone of each
  layer when it mounts, so the mapped layer mounts are detached right after); the upper dir
  is private to the container and is not mapped: its root directory is chowned to the pod's
  root, and what the container writes lands there with its host ids, as with a chowned
  rootfs. overlayfs itself cannot be ID-mapped (the kernel refuses, EINVAL).
- a directory rootfs or a bind rootfs: an ID-mapped clone of it;
- every bind mount (volumes, /etc/hosts and friends, /dev/shm): an ID-mapped clone under
  <container dir>/idmap/<n>, which the container bind-mounts instead of the source.

Everything is mounted under the container's directory and released (`release`) before it
is removed: a directory walk must never reach layers through a mapped mount.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import stat
from pathlib import Path

from engine.errors import FailedPrecondition, InvalidArgument
from engine.execdriver import userns
from engine.execdriver.spec import IDMapping, InitSpec, MountPoint
from engine.graphdriver.base import Mount
from engine.runtime.spec import Rootfs
from engine.sys import idmap, linux

IDMAP_DIR = "idmap"  # under the container dir: the mapped bind sources


def _mapped(source: str, target: str, *, userns_fd: int, recursive: bool, what: str) -> None:
    try:
        idmap.mount_idmapped(source, target, userns_fd=userns_fd, recursive=recursive)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
            raise FailedPrecondition(f"{what}: {source} cannot be ID-mapped for the pod's user "
                                     f"namespace ({e.strerror}): its filesystem (or one "
                                     "mounted below it) does not support ID-mapped mounts"
                                     ) from e
        raise


def _make_like(source: str, target: Path) -> None:
    if os.path.isdir(source):
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(exist_ok=True)


def _chown_to_pod_root(path: str, *, uids: tuple[IDMapping, ...],
                       gids: tuple[IDMapping, ...]) -> None:
    """Give `path` the host ids its current owner has inside the pod (0 -> pod root)."""
    st = os.stat(path)
    uid, gid = userns.to_host(uids, st.st_uid), userns.to_host(gids, st.st_gid)
    if uid is None or gid is None:
        raise InvalidArgument(f"{path} is owned by {st.st_uid}:{st.st_gid}, which the pod's "
                              "user namespace does not map")
    os.chown(path, uid, gid)


def _overlay(m: Mount, target: Path, *, scratch: Path, userns_fd: int,
             uids: tuple[IDMapping, ...], gids: tuple[IDMapping, ...]) -> None:
    opts = list(m.options)
    lower = next((o for o in opts if o.startswith("lowerdir=")), "")
    upper = next((o for o in opts if o.startswith("upperdir=")), "")
    if not lower:
        raise InvalidArgument("overlay rootfs without lowerdir")
    layers = lower[len("lowerdir="):].split(":")
    mapped: list[str] = []
    try:
        for i, layer in enumerate(layers):
            point = scratch / str(i)
            point.mkdir(parents=True, exist_ok=True)
            _mapped(layer, str(point), userns_fd=userns_fd, recursive=False,
                    what="rootfs layer")
            mapped.append(str(point))
        if upper:
            _chown_to_pod_root(upper[len("upperdir="):], uids=uids, gids=gids)
        rest = [o for o in opts if not o.startswith("lowerdir=")]
        linux.mount("overlay", str(target), "overlay", 0,
                    ",".join([*rest, "lowerdir=" + ":".join(mapped)]))
    finally:
        for mapped_layer in mapped:  # overlayfs holds its own clones now
            with contextlib.suppress(OSError):
                linux.umount2(mapped_layer, linux.MNT_DETACH)
        for i in range(len(layers)):
            with contextlib.suppress(OSError):
                (scratch / str(i)).rmdir()
        with contextlib.suppress(OSError):
            scratch.rmdir()


def mount_rootfs(rootfs: Rootfs, target: Path, *, userns_path: str, scratch: Path,
                 uids: tuple[IDMapping, ...], gids: tuple[IDMapping, ...]) -> str:
    """Mount the container's rootfs at `target`, ID-mapped for the pod's user namespace.
    `scratch` is a short, container-private directory for the transient layer mounts."""
    target.mkdir(parents=True, exist_ok=True)
    with idmap.open_userns(userns_path) as fd:
        if rootfs.directory:
            if rootfs.mounts:
                raise InvalidArgument("rootfs: give a directory or mounts, not both")
            if not os.path.isdir(rootfs.directory):
                raise InvalidArgument(f"rootfs {rootfs.directory} is not a directory")
            _mapped(os.path.realpath(rootfs.directory), str(target), userns_fd=fd,
                    recursive=True, what="rootfs")
            return str(target)
        if len(rootfs.mounts) != 1:
            raise InvalidArgument(f"rootfs: expected one mount, got {len(rootfs.mounts)}")
        m = rootfs.mounts[0]
        if m.type == "overlay":
            _overlay(m, target, scratch=scratch, userns_fd=fd, uids=uids, gids=gids)
        elif m.type == "bind" or "bind" in m.options or "rbind" in m.options:
            _mapped(m.source, str(target), userns_fd=fd, recursive=True, what="rootfs")
            if "ro" in m.options:
                linux.mount("", str(target), "", linux.MS_REMOUNT | linux.MS_BIND
                            | linux.MS_RDONLY)
        else:
            raise InvalidArgument(f"rootfs mount type {m.type!r} cannot be ID-mapped")
    return str(target)


def map_mounts(spec: InitSpec, cdir: Path, *, userns_path: str) -> InitSpec:
    """The spec with every bind mount's source replaced by an ID-mapped clone of it under
    <cdir>/idmap/. Only private propagation: a clone is in no peer group of the host."""
    out: list[MountPoint] = []
    with idmap.open_userns(userns_path) as fd:
        for i, m in enumerate(spec.mounts):
            if not (m.type == "bind" or {"bind", "rbind"} & set(m.options)):
                out.append(m)
                continue
            if {"rshared", "shared", "rslave", "slave"} & set(m.options):
                raise InvalidArgument(f"mount {m.destination}: only private propagation is "
                                      "possible in a pod user namespace (its volumes are "
                                      "ID-mapped copies of the host's mounts)")
            target = cdir / IDMAP_DIR / str(i)
            _make_like(m.source, target)
            _mapped(m.source, str(target), userns_fd=fd, recursive="rbind" in m.options,
                    what=f"mount {m.destination}")
            out.append(dataclasses.replace(m, source=str(target)))
    return dataclasses.replace(spec, mounts=tuple(out))


def unsearchable_parent(path: Path) -> str:
    """The first directory above `path` that an unprivileged uid cannot walk through (no
    o+x), as a reason; "" when there is none. Directories below `path` are ours to fix."""
    for d in path.parents:
        try:
            mode = d.stat().st_mode
        except OSError as e:
            return f"{d}: {e.strerror}"
        if not mode & stat.S_IXOTH:
            return (f"{d} (mode {stat.S_IMODE(mode):o}) is not searchable by the root of a pod "
                    f"user namespace, an unprivileged host uid")
    return ""


def check_searchable(path: Path, *, stop: Path) -> None:
    """The pod's root (an unprivileged host uid) must be able to walk to `path` to mount
    what lies there inside the container: every directory from `/` to it needs o+x. Ours
    (below `stop`, the run root) get it; for the others, a precise error."""
    for d in [path, *path.parents]:
        mode = d.stat().st_mode
        if mode & stat.S_IXOTH:
            continue
        if d == stop or stop in d.parents:
            os.chmod(d, stat.S_IMODE(mode) | stat.S_IXOTH)
        else:
            raise FailedPrecondition(f"{d} (mode {stat.S_IMODE(mode):o}) is not searchable by "
                                     "the root of a pod user namespace, an unprivileged host "
                                     "uid: the engine's run root must be reachable (o+x)")


def release(cdir: Path) -> None:
    """Detach every mount below `cdir`, deepest first (rootfs, mapped binds)."""
    prefix = str(cdir) + "/"
    with open("/proc/self/mountinfo") as f:
        points = {line.split()[4].replace("\\040", " ") for line in f}
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        with contextlib.suppress(OSError):
            linux.umount2(point, linux.MNT_DETACH)
