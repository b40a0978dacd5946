"""host-local's on-disk layout, shared with the reference plugin.

``<dataDir>/<network>/<ip>`` holds ``<containerID>\\r\\n<ifname>`` (older files: the ID
alone), ``last_reserved_ip.<range set index>`` holds the last address handed out, and
``lock`` is flock()ed around every change.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time

from engine.networkdriver.plugins import ipnet, spec
from engine.networkdriver.plugins.ipam_config import IPAddress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

LINE_BREAK = "\r\n"
LAST_IP_PREFIX = "last_reserved_ip."
LOCK_NAME = "lock"


def _key(container_id: str, ifname: str) -> str:
    return container_id.strip() + LINE_BREAK + ifname


class DiskStore:
    def __init__(self, data_dir: str, network: str, *, lock_timeout: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dir = os.path.join(data_dir, network)
        self._lock_timeout = lock_timeout
        self._clock = clock

    def locked(self) -> StoreLock:
        """Hold the flock on ``lock``; a holder that died (kill -9) releases it with its fd.

        Without ``lock_timeout`` this blocks like host-local (the kernel queues waiters, so
        hundreds of concurrent invocations all get their turn); with one, a caller that
        cannot wait gets CNIError 11 (try again later).
        """
        return StoreLock(self)

    def _acquire(self) -> int:
        lock = os.path.join(self.dir, LOCK_NAME)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # the network's first use: its directory is made here
            os.makedirs(self.dir, mode=0o755, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if self._lock_timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
                return fd
            deadline = self._clock() + self._lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    if self._clock() >= deadline:
                        raise spec.CNIError(spec.ERR_TRY_AGAIN_LATER,
                                            "IPAM store is locked by another invocation",
                                            os.path.join(self.dir, LOCK_NAME)) from None
                    time.sleep(0.005)
        except BaseException:
            os.close(fd)
            raise

    def reserve(self, ip: IPAddress, container_id: str, ifname: str, set_index: int) -> bool:
        path = f"{self.dir}/{ip}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, _key(container_id, ifname).encode())
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        _overwrite(f"{self.dir}/{LAST_IP_PREFIX}{set_index}", str(ip).encode())
        return True

    def last_reserved(self, set_index: int) -> IPAddress | None:
        try:
            fd = os.open(f"{self.dir}/{LAST_IP_PREFIX}{set_index}", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            text = os.read(fd, 64).decode("utf-8", "replace").strip()
        finally:
            os.close(fd)
        try:
            return ipnet.ip_address(text)
        except ValueError:
            return None

    def _files(self) -> Iterator[tuple[str, str]]:
        """(name, stripped content) of each file but the lock and the last_reserved_ip.N
        ones. Opened relative to the directory's fd (one path component to resolve per file,
        not the whole path) and read with one read: the scan runs on every ADD and DEL."""
        try:
            dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            for name in os.listdir(dfd):
                if name == LOCK_NAME or name.startswith(LAST_IP_PREFIX):
                    continue
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
                except FileNotFoundError:
                    continue
                try:
                    data = os.read(fd, 4096)
                    if len(data) == 4096:
                        data += _read_all(fd)
                except IsADirectoryError:
                    continue
                finally:
                    os.close(fd)
                yield name, data.decode("utf-8", "replace").strip()
        finally:
            os.close(dfd)

    def reservations(self) -> dict[IPAddress, str]:
        """Every reserved address and its file's (stripped) content."""
        out: dict[IPAddress, str] = {}
        for name, owner in self._files():
            try:
                out[ipnet.ip_address(name)] = owner
            except ValueError:
                continue  # anything else in the directory
        return out

    def _held_by(self, *owners: str) -> dict[str, list[IPAddress]]:
        """The addresses whose file holds one of ``owners``, by owner (an address is parsed
        only for the files that match)."""
        out: dict[str, list[IPAddress]] = {o: [] for o in owners}
        for name, owner in self._files():
            if owner in out:
                try:
                    out[owner].append(ipnet.ip_address(name))
                except ValueError:
                    continue
        return out

    def ips_of(self, container_id: str, ifname: str) -> list[IPAddress]:
        key, legacy = _key(container_id, ifname), container_id.strip()
        held = self._held_by(key, legacy)
        return held[key] + (held[legacy] if legacy != key else [])

    def release(self, container_id: str, ifname: str) -> list[IPAddress]:
        """Release by container ID and interface; files of the ID-only format match the ID."""
        key, legacy = _key(container_id, ifname), container_id.strip()
        held = self._held_by(key, legacy)
        return self._remove(held[key] or held[legacy])

    def gc(self, valid: Iterable[tuple[str, str]]) -> list[IPAddress]:
        """Release every address that no valid (containerID, ifname) attachment holds."""
        keys = {_key(cid, ifname) for cid, ifname in valid}
        ids = {cid.strip() for cid, _ in valid}
        stale = [ip for ip, owner in self.reservations().items()
                 if owner not in keys and owner not in ids]
        return self._remove(stale)

    def _remove(self, ips: Iterable[IPAddress]) -> list[IPAddress]:
        done = []
        for ip in ips:
            try:
                os.unlink(f"{self.dir}/{ip}")
                done.append(ip)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
        return done


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _overwrite(path: str, data: bytes) -> None:
    """Replace a small file's content in place. Not open(path, "w"): ext4 (auto_da_alloc)
    flushes a file truncated to zero and rewritten when it is closed, milliseconds of I/O
    wait on every ADD; shrinking it after the write to a non-zero size does not."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class StoreLock:
    """``with store.locked():`` the data dir's flock (a class: contextlib costs an exec ~2 ms)."""

    def __init__(self, store: DiskStore) -> None:
        self._store = store
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = self._store._acquire()

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)  # closing the only fd drops the flock
