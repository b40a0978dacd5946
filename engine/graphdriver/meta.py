"""Snapshot metadata shared by the drivers: one SQLite table, one transaction per change.

Directory `<root>/snapshots/<id>` is created inside the transaction that inserts row `<id>`
and removed after the transaction that deletes it, so after a crash the only possible
leftovers are directories without a row, which `repair()` deletes.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from engine.graphdriver.base import Info, Kind

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    parent TEXT REFERENCES snapshots(key),
    kind TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
"""


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection,
                lock: threading.RLock) -> Iterator[sqlite3.Connection]:
    """One transaction; the lock serialises the threads sharing this connection."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


class SnapshotMeta:
    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.dir = root / "snapshots"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise FailedPrecondition(f"{root} is in use by another driver instance") from None
        self._dblock = threading.RLock()
        self.db = connect(root / "metadata.db")
        self.db.executescript(_SCHEMA)

    def path(self, sid: int) -> Path:
        return self.dir / str(sid)

    def _row(self, key: str) -> tuple[int, str, str | None, str, float]:
        with self._dblock:
            row = self.db.execute(
                "SELECT id, key, parent, kind, created FROM snapshots WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key!r} does not exist")
        return row  # type: ignore[no-any-return]

    def id_of(self, key: str) -> int:
        return self._row(key)[0]

    def stat(self, key: str) -> Info:
        _, k, parent, kind, created = self._row(key)
        return Info(key=k, parent=parent, kind=Kind(kind), created=created)

    def walk(self) -> list[Info]:
        with self._dblock:
            rows = self.db.execute(
                "SELECT key, parent, kind, created FROM snapshots ORDER BY id").fetchall()
        return [Info(key=k, parent=p, kind=Kind(kd), created=c) for k, p, kd, c in rows]

    def chain(self, key: str) -> list[int]:
        """Snapshot ids from `key` up to its base layer."""
        ids: list[int] = []
        cur: str | None = key
        while cur is not None:
            sid, _, parent, _, _ = self._row(cur)
            ids.append(sid)
            cur = parent
        return ids

    def create(self, key: str, parent: str | None, kind: Kind,
               make: Callable[[Path, list[int]], None]) -> int:
        """Insert `key` and run make(dir, parent_chain_ids) inside the same transaction."""
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        with transaction(self.db, self._dblock) as db:
            if db.execute("SELECT 1 FROM snapshots WHERE key = ?", (key,)).fetchone():
                raise AlreadyExists(f"snapshot {key!r} already exists")
            parents: list[int] = []
            if parent is not None:
                if self.stat(parent).kind is not Kind.COMMITTED:
                    raise FailedPrecondition(f"parent {parent!r} is not a committed snapshot")
                parents = self.chain(parent)
            cur = db.execute(
                "INSERT INTO snapshots (key, parent, kind, created) VALUES (?, ?, ?, ?)",
                (key, parent, kind.value, self._clock()))
            sid = int(cur.lastrowid or 0)
            target = self.path(sid)
            try:
                target.mkdir()
                make(target, parents)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
        return sid

    def commit(self, name: str, key: str) -> None:
        with transaction(self.db, self._dblock) as db:
            info = self.stat(key)
            if info.kind is not Kind.ACTIVE:
                raise FailedPrecondition(f"snapshot {key!r} is {info.kind.value}, not active")
            if db.execute("SELECT 1 FROM snapshots WHERE key = ?", (name,)).fetchone():
                raise AlreadyExists(f"snapshot {name!r} already exists")
            db.execute("UPDATE snapshots SET key = ?, kind = ? WHERE key = ?",
                       (name, Kind.COMMITTED.value, key))

    def remove(self, key: str) -> int:
        with transaction(self.db, self._dblock) as db:
            sid = self.id_of(key)
            child = db.execute("SELECT key FROM snapshots WHERE parent = ? LIMIT 1",
                               (key,)).fetchone()
            if child:
                raise FailedPrecondition(f"snapshot {key!r} has children (e.g. {child[0]!r})")
            db.execute("DELETE FROM snapshots WHERE id = ?", (sid,))
        shutil.rmtree(self.path(sid), ignore_errors=True)
        return sid

    def repair(self) -> list[str]:
        """Delete directories that no row owns (what a crash mid-create/remove leaves)."""
        with self._dblock:
            known = {str(r[0]) for r in self.db.execute("SELECT id FROM snapshots")}
        removed = []
        for entry in os.scandir(self.dir):
            if entry.name not in known:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
        return removed

    def close(self) -> None:
        self.db.close()
        os.close(self._lock)


def disk_usage(path: Path) -> tuple[int, int]:
    """(bytes, inodes) under path, each inode counted once, symlinks not followed."""
    seen: set[tuple[int, int]] = set()
    size = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                continue
            seen.add(ident)
            size += st.st_blocks * 512
    return size, len(seen)
