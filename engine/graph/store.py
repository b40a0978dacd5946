"""The Graph's metadata in SQLite (WAL): images, their layers, references, layers, leases.

Every state change is one transaction, so the database is always one of the states the
code meant. Blobs and snapshots live outside it; `Graph.repair()` reconciles them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine.errors import NotFound
from engine.graph.model import LayerRef

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY, manifest TEXT NOT NULL, manifest_size INTEGER NOT NULL,
    idx TEXT, idx_size INTEGER NOT NULL DEFAULT 0, config_size INTEGER NOT NULL,
    pulled_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE, pos INTEGER NOT NULL,
    blob TEXT NOT NULL, blob_size INTEGER NOT NULL, media_type TEXT NOT NULL,
    diff_id TEXT NOT NULL, chain_id TEXT NOT NULL, PRIMARY KEY (image_id, pos));
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
CREATE TABLE IF NOT EXISTS refs (
    name TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS refs_image ON refs(image_id);
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY, parent TEXT, diff_id TEXT NOT NULL, size INTEGER NOT NULL,
    entries INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    key TEXT PRIMARY KEY, image_id TEXT, parent TEXT, created REAL NOT NULL);
"""


@dataclasses.dataclass(frozen=True)
class ImageRow:
    id: str
    manifest: str
    manifest_size: int
    index: str | None
    index_size: int
    config_size: int
    pulled_at: float
    refs: tuple[str, ...]
    layers: tuple[LayerRef, ...]


@dataclasses.dataclass(frozen=True)
class LayerRow:
    chain_id: str
    parent: str | None
    diff_id: str
    size: int
    entries: int


class MetaStore:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                  timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(_SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _q(self, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return self.db.execute(sql, args).fetchall()

    # images and references
    def put_image(self, row: ImageRow) -> None:
        with self.tx() as db:
            # an upsert, not REPLACE: replacing would cascade-delete the image's other refs
            db.execute("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO "
                       "UPDATE SET manifest = excluded.manifest, manifest_size = "
                       "excluded.manifest_size, idx = excluded.idx, idx_size = "
                       "excluded.idx_size, pulled_at = excluded.pulled_at",
                       (row.id, row.manifest, row.manifest_size, row.index, row.index_size,
                        row.config_size, row.pulled_at))
            db.execute("DELETE FROM image_layers WHERE image_id = ?", (row.id,))
            db.executemany("INSERT INTO image_layers VALUES (?, ?, ?, ?, ?, ?, ?)", [
                (row.id, i, lr.blob, lr.blob_size, lr.media_type, lr.diff_id, lr.chain_id)
                for i, lr in enumerate(row.layers)])
            db.executemany("INSERT OR REPLACE INTO refs VALUES (?, ?)",
                           [(name, row.id) for name in row.refs])

    def image(self, image_id: str) -> ImageRow:
        rows = self._q("SELECT * FROM images WHERE id = ?", (image_id,))
        if not rows:
            raise NotFound(f"image {image_id} not found")
        i, man, msize, idx, isize, csize, at = rows[0]
        refs = tuple(str(r[0]) for r in self._q(
            "SELECT name FROM refs WHERE image_id = ? ORDER BY name", (image_id,)))
        layers = tuple(LayerRef(str(b), int(str(s)), str(m), str(d), str(c)) for b, s, m, d, c in
                       self._q("SELECT blob, blob_size, media_type, diff_id, chain_id FROM "
                               "image_layers WHERE image_id = ? ORDER BY pos", (image_id,)))
        return ImageRow(str(i), str(man), int(str(msize)), None if idx is None else str(idx),
                        int(str(isize)), int(str(csize)), float(str(at)), refs, layers)

    def has_image(self, image_id: str) -> bool:
        return bool(self._q("SELECT 1 FROM images WHERE id = ?", (image_id,)))

    def image_ids(self) -> list[str]:
        return [str(r[0]) for r in self._q("SELECT id FROM images ORDER BY pulled_at, id")]

    def lookup_ref(self, name: str) -> str | None:
        rows = self._q("SELECT image_id FROM refs WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def ids_with_prefix(self, prefix: str) -> list[str]:
        return [str(r[0]) for r in self._q("SELECT id FROM images WHERE id LIKE ? || '%'",
                                           (prefix,))]

    def ids_by_manifest(self, repo: str, digest: str) -> list[str]:
        rows = self._q("SELECT id FROM images WHERE manifest = ? OR idx = ?", (digest, digest))
        named = self.lookup_ref(f"{repo}@{digest}")
        return [named] if named else [str(r[0]) for r in rows]

    def delete_image(self, image_id: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM images WHERE id = ?", (image_id,))

    def delete_ref(self, name: str) -> str | None:
        """Delete one reference; returns the image id it pointed at."""
        with self.tx() as db:
            row = db.execute("SELECT image_id FROM refs WHERE name = ?", (name,)).fetchone()
            db.execute("DELETE FROM refs WHERE name = ?", (name,))
        return str(row[0]) if row else None

    # layers
    def add_layer(self, row: LayerRow, created: float) -> None:
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO layers VALUES (?, ?, ?, ?, ?, ?)",
                       (row.chain_id, row.parent, row.diff_id, row.size, row.entries, created))

    def layer(self, chain_id: str) -> LayerRow | None:
        rows = self._q("SELECT chain_id, parent, diff_id, size, entries FROM layers "
                       "WHERE chain_id = ?", (chain_id,))
        if not rows:
            return None
        c, p, d, s, e = rows[0]
        return LayerRow(str(c), None if p is None else str(p), str(d), int(str(s)), int(str(e)))

    def layers(self) -> list[LayerRow]:
        return [LayerRow(str(c), None if p is None else str(p), str(d), int(str(s)), int(str(e)))
                for c, p, d, s, e in self._q(
                    "SELECT chain_id, parent, diff_id, size, entries FROM layers")]

    def delete_layer(self, chain_id: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM layers WHERE chain_id = ?", (chain_id,))

    def images_of_layer(self, chain_id: str) -> list[str]:
        return [str(r[0]) for r in self._q(
            "SELECT DISTINCT image_id FROM image_layers WHERE chain_id = ?", (chain_id,))]

    # leases (container rootfs snapshots pinning a layer chain)
    def add_lease(self, key: str, image_id: str | None, parent: str | None,
                  created: float) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO leases VALUES (?, ?, ?, ?)", (key, image_id, parent, created))

    def lease(self, key: str) -> tuple[str | None, str | None] | None:
        rows = self._q("SELECT image_id, parent FROM leases WHERE key = ?", (key,))
        if not rows:
            return None
        i, p = rows[0]
        return (None if i is None else str(i), None if p is None else str(p))

    def leases(self) -> dict[str, str | None]:
        return {str(k): None if p is None else str(p)
                for k, p in self._q("SELECT key, parent FROM leases")}

    def delete_lease(self, key: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM leases WHERE key = ?", (key,))

    # what is in use
    def referenced_chains(self) -> set[str]:
        used = {str(r[0]) for r in self._q("SELECT chain_id FROM image_layers")}
        parents = {lr.chain_id: lr.parent for lr in self.layers()}
        for top in self.leases().values():
            cur = top
            while cur is not None and cur not in used:
                used.add(cur)
                cur = parents.get(cur)
        return used

    def referenced_blobs(self) -> set[str]:
        out: set[str] = set()
        for i, man, idx in self._q("SELECT id, manifest, idx FROM images"):
            out.update(str(x) for x in (i, man, idx) if x is not None)
        out.update(str(r[0]) for r in self._q("SELECT blob FROM image_layers"))
        return out
