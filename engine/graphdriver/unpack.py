"""Safe, fast application of one layer tar stream to a directory.

Safety: every entry name is cleaned as if rooted at `/` (so `../x` and `/x` land inside the
layer), every directory lookup goes through openat2(RESOLVE_IN_ROOT) (so a symlink planted
by the layer resolves inside it), the final component is never followed (O_NOFOLLOW,
lchown, *at calls with the resolved parent fd), hardlink targets are resolved the same way,
and whiteout names that would escape (`.wh..`, `.wh...`, names with `/`) are refused.

Whiteouts: in OVERLAY mode (the directory is an overlay upper dir) `.wh.<name>` becomes a
0:0 character device and `.wh..wh..opq` sets `trusted.overlay.opaque=y`; in DELETE mode
(vfs: the directory is a full copy of the parent) they delete what the parents put there.

Speed: file data goes from the decompressor's buffer to the file with os.write in large
slices; parent directory fds are cached between entries; directory times are set once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import os
import posixpath
import shutil
import stat
from typing import Protocol

from engine.errors import InvalidArgument, ResourceExhausted
from engine.graph.errors import from_os_error
from engine.graphdriver import tarstream as ts
from engine.graphdriver.resolve import open_in_root

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
WH_META = ".wh..wh."
_O_PATH_DIR = os.O_PATH | os.O_DIRECTORY
_ALLOWED_XATTR_PREFIXES = ("user.", "security.capability", "system.posix_acl_")


class Whiteouts(enum.Enum):
    OVERLAY = "overlay"
    DELETE = "delete"


@dataclasses.dataclass(frozen=True)
class Limits:
    max_entries: int = 1_000_000
    max_bytes: int = 64 << 30  # uncompressed file data in one layer


@dataclasses.dataclass(frozen=True)
class ApplyStats:
    entries: int
    bytes: int


class Source(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def _clean(name: str) -> str:
    """An entry name as a relative path that cannot leave the root ('' is the root)."""
    return posixpath.normpath("/" + name).lstrip("/")


class _Applier:
    def __init__(self, root: str, whiteouts: Whiteouts, limits: Limits) -> None:
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.whiteouts = whiteouts
        self.limits = limits
        self.dirs: dict[str, int] = {}
        self.unpacked: set[str] = set()
        self.dir_meta: list[tuple[str, ts.Entry]] = []
        self.chown = os.geteuid() == 0

    def close(self) -> None:
        self._forget_dirs()
        os.close(self.root_fd)

    def _forget_dirs(self, keep: int = -1) -> None:
        """Close cached directory fds (all but `keep`, the parent of what is removed)."""
        kept = {p: fd for p, fd in self.dirs.items() if fd == keep}
        for fd in self.dirs.values():
            if fd != keep:
                os.close(fd)
        self.dirs = kept

    def dir_fd(self, path: str) -> int:
        """An O_PATH fd of directory `path` inside the root, creating missing parents."""
        fd = self.dirs.get(path)
        if fd is not None:
            return fd
        try:
            fd = open_in_root(self.root_fd, path, _O_PATH_DIR)
        except FileNotFoundError:
            parent, base = posixpath.split(path)
            pfd = self.dir_fd(parent)
            with contextlib.suppress(FileExistsError):  # a dangling symlink fails below
                os.mkdir(base, 0o755, dir_fd=pfd)
            try:
                fd = open_in_root(self.root_fd, path, _O_PATH_DIR)
            except FileNotFoundError:
                raise InvalidArgument(
                    f"layer entry path {path!r} goes through a dangling symlink") from None
        except NotADirectoryError:
            raise InvalidArgument(f"layer entry needs {path!r} to be a directory") from None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise InvalidArgument(f"layer entry path {path!r}: too many symlinks") from None
        self.dirs[path] = fd
        return fd

    def trim(self) -> None:
        """Bound the fd cache; called between entries, never while an fd is in use."""
        if len(self.dirs) > 256:
            self._forget_dirs()

    def remove(self, pfd: int, base: str) -> None:
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        self._forget_dirs(keep=pfd)  # cached fds may point below what is removed
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)

    def whiteout(self, parent: str, base: str) -> None:
        pfd = self.dir_fd(parent)
        if base == WH_OPAQUE:
            if self.whiteouts is Whiteouts.OVERLAY:
                fd = open_in_root(self.root_fd, parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.setxattr(fd, "trusted.overlay.opaque", b"y")
                finally:
                    os.close(fd)
            else:
                lfd = open_in_root(self.root_fd, parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    children = os.listdir(lfd)
                finally:
                    os.close(lfd)
                for child in children:
                    if posixpath.join(parent, child) not in self.unpacked:
                        self.remove(self.dir_fd(parent), child)
            return
        if base.startswith(WH_META):
            return  # aufs bookkeeping (.wh..wh.plnk and friends): nothing to apply
        target = base[len(WH_PREFIX):]
        if target in ("", ".", "..") or "/" in target:
            raise InvalidArgument(f"invalid whiteout name {posixpath.join(parent, base)!r}")
        self.remove(pfd, target)
        if self.whiteouts is Whiteouts.OVERLAY:
            os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(0, 0), dir_fd=self.dir_fd(parent))

    def entry(self, tar: ts.TarReader, e: ts.Entry, path: str) -> None:
        parent, base = posixpath.split(path)
        pfd = self.dir_fd(parent)
        if e.type == ts.DIR:
            try:
                st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    self.remove(pfd, base)
                    os.mkdir(base, 0o700, dir_fd=pfd)
            except FileNotFoundError:
                os.mkdir(base, 0o700, dir_fd=pfd)
            self.dir_meta.append((path, e))
            self.unpacked.add(path)
            return
        if e.type == ts.REG:
            try:
                fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=pfd)
            except FileExistsError:
                self.remove(pfd, base)
                pfd = self.dir_fd(parent)
                fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=pfd)
            try:
                tar.copy_to(fd)
                if self.chown:
                    os.fchown(fd, e.uid, e.gid)
                os.fchmod(fd, e.mode)  # after chown, which clears setuid/setgid
                self._xattrs(fd, e)
                os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
            finally:
                os.close(fd)
            self.unpacked.add(path)
            return
        self.remove(pfd, base)
        pfd = self.dir_fd(parent)
        if e.type == ts.HARDLINK:
            self.hardlink(e, base, pfd)
            self.unpacked.add(path)
            return
        if e.type == ts.SYMLINK:
            os.symlink(e.linkname, base, dir_fd=pfd)
        elif e.type == ts.FIFO:
            os.mkfifo(base, 0o600, dir_fd=pfd)
        else:
            kind = stat.S_IFCHR if e.type == ts.CHAR else stat.S_IFBLK
            os.mknod(base, 0o600 | kind, os.makedev(e.devmajor, e.devminor), dir_fd=pfd)
        if self.chown:
            os.chown(base, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
        if e.type != ts.SYMLINK:
            os.chmod(base, e.mode, dir_fd=pfd)  # our own fresh node: nothing to follow
        os.utime(base, ns=(e.mtime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)
        self.unpacked.add(path)

    def hardlink(self, e: ts.Entry, base: str, pfd: int) -> None:
        target = _clean(e.linkname)
        if not target:
            raise InvalidArgument(f"hardlink {e.name!r} points at the layer root")
        tparent, tbase = posixpath.split(target)
        try:
            tfd = self.dir_fd(tparent)
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except (FileNotFoundError, PermissionError) as exc:
            raise InvalidArgument(
                f"hardlink {e.name!r} -> {e.linkname!r}: target not in this layer ({exc})"
            ) from None

    def _xattrs(self, fd: int, e: ts.Entry) -> None:
        for key, value in e.xattrs.items():
            if key.startswith(_ALLOWED_XATTR_PREFIXES):
                os.setxattr(fd, key, value)

    def finish_dirs(self) -> None:
        self._forget_dirs()
        for path, e in reversed(self.dir_meta):
            try:
                fd = open_in_root(self.root_fd, path,
                                  os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except (FileNotFoundError, NotADirectoryError, OSError):
                continue  # replaced or removed by a later entry of the same layer
            try:
                if self.chown:
                    os.fchown(fd, e.uid, e.gid)
                os.fchmod(fd, e.mode)
                self._xattrs(fd, e)
                os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
            finally:
                os.close(fd)


def apply_layer(root: str, src: Source, *, whiteouts: Whiteouts,
                limits: Limits | None = None) -> ApplyStats:
    """Apply the uncompressed layer tar read from `src` to directory `root`."""
    try:
        return _apply(root, src, whiteouts, limits or Limits())
    except OSError as exc:
        raise from_os_error(exc, f"unpacking a layer into {root}") from None


def _apply(root: str, src: Source, whiteouts: Whiteouts, lim: Limits) -> ApplyStats:
    ap = _Applier(root, whiteouts, lim)
    tar = ts.TarReader(src)
    entries = total = 0
    try:
        while (e := tar.next()) is not None:
            entries += 1
            if entries > lim.max_entries:
                raise ResourceExhausted(f"layer has more than {lim.max_entries} entries")
            total += e.size
            if total > lim.max_bytes:
                raise ResourceExhausted(f"layer holds more than {lim.max_bytes} bytes of files")
            if "\0" in e.name or "\0" in e.linkname:
                raise InvalidArgument(f"layer entry {e.name!r}: NUL byte in a name")
            path = _clean(e.name)
            if not path:
                continue  # the root entry itself: the layer dir is ours, not the image's
            parent, base = posixpath.split(path)
            ap.trim()
            if base.startswith(WH_PREFIX):
                ap.whiteout(parent, base)
                continue
            ap.entry(tar, e, path)
        ap.finish_dirs()
    finally:
        ap.close()
    return ApplyStats(entries=entries, bytes=total)
