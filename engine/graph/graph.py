"""The Graph: content store + graph driver + metadata, kept consistent across crashes.

Ordering rules that make `kill -9` safe at any point:
- a blob is published by an atomic rename after verification (content.py);
- a layer row is inserted only after its snapshot is committed, and deleted before the
  snapshot is removed; an image row only after all its layers have rows;
- a lease row is inserted before its snapshot is prepared and deleted after it is removed.
`repair()` (run on open) removes what those orders can leave behind: ingest files, extract
snapshots, snapshots without rows, rows without snapshots, then garbage-collects.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from engine.graph import digest as dg
from engine.graph.content import ContentStore
from engine.graph.flight import SingleFlight
from engine.graph.layerstream import LayerReader
from engine.graph.model import Image, Layer, LayerRef, parse_config
from engine.graph.prefetch import Prefetch
from engine.graph.store import ImageRow, LayerRow, MetaStore
from engine.graphdriver.base import GraphDriver, Kind, Mount
from engine.graphdriver.unpack import Limits

log = logging.getLogger(__name__)
EXTRACT_PREFIX = "extract-"


@dataclasses.dataclass(frozen=True)
class GcStats:
    layers: int
    blobs: int
    bytes: int


class Protection:
    """In-flight work's hold on blobs and layers; GC leaves them alone until release()."""

    def __init__(self, graph: Graph) -> None:
        self._graph = graph
        self._blobs: list[str] = []
        self._chains: list[str] = []

    def add(self, blobs: Iterable[str] = (), chains: Iterable[str] = ()) -> None:
        b, c = list(blobs), list(chains)
        self._graph._hold(b, c, 1)
        self._blobs += b
        self._chains += c

    def release(self) -> None:
        self._graph._hold(self._blobs, self._chains, -1)
        self._blobs, self._chains = [], []


class Graph:
    def __init__(self, root: Path, driver: GraphDriver, *, limits: Limits | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._lockfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lockfd)
            raise FailedPrecondition(f"image store {root} is in use by another process") from None
        self.content = ContentStore(root / "content")
        self.meta = MetaStore(root / "graph.db")
        self.driver = driver
        self.limits = limits or Limits()
        self.clock = clock
        self._gc_lock = threading.RLock()
        self._blobs: collections.Counter[str] = collections.Counter()
        self._chains: collections.Counter[str] = collections.Counter()
        self._configs: dict[str, bytes] = {}
        self.blob_flight: SingleFlight[None] = SingleFlight()
        self.layer_flight: SingleFlight[None] = SingleFlight()
        self.repair()

    def close(self) -> None:
        self.meta.close()
        self.driver.close()
        os.close(self._lockfd)

    # protection of in-flight work from GC
    @contextlib.contextmanager
    def protect(self, blobs: Iterable[str], chains: Iterable[str]) -> Iterator[Protection]:
        """Keep these blobs and layers (and any added to the handle) out of GC's reach."""
        handle = Protection(self)
        handle.add(blobs, chains)
        try:
            yield handle
        finally:
            handle.release()

    @contextlib.contextmanager
    def gc_paused(self) -> Iterator[None]:
        with self._gc_lock:
            yield

    def _hold(self, blobs: list[str], chains: list[str], sign: int) -> None:
        with self._gc_lock:
            for b in blobs:
                self._blobs[b] += sign
            for c in chains:
                self._chains[c] += sign
            self._blobs += collections.Counter()  # drop zero counts
            self._chains += collections.Counter()

    # repair and garbage collection
    def repair(self) -> GcStats:
        with self._gc_lock:
            self.content.clean_ingest()
            leases = self.meta.leases()
            snaps = {i.key: i for i in self.driver.walk()}
            for info in reversed(list(snaps.values())):
                if info.kind is not Kind.COMMITTED and (
                        info.key.startswith(EXTRACT_PREFIX) or info.key not in leases):
                    log.info("repair: removing stale snapshot", extra={"key": info.key})
                    self.driver.remove(info.key)
            for key in leases:
                if key not in snaps:
                    log.info("repair: dropping lease without snapshot", extra={"key": key})
                    self.meta.delete_lease(key)
            for row in self.meta.layers():
                snap = snaps.get(row.chain_id)
                if snap is None or snap.kind is not Kind.COMMITTED:
                    log.warning("repair: layer row without snapshot",
                                extra={"chain_id": row.chain_id})
                    for image_id in self.meta.images_of_layer(row.chain_id):
                        self.meta.delete_image(image_id)
                    self.meta.delete_layer(row.chain_id)
            return self.gc()

    def gc(self) -> GcStats:
        """Delete layers and blobs that no image, lease or in-flight pull uses."""
        with self._gc_lock:
            used = self.meta.referenced_chains() | set(self._chains)
            committed = {i.key: i.parent for i in self.driver.walk()
                         if i.kind is Kind.COMMITTED}
            rows = {r.chain_id for r in self.meta.layers()}
            doomed = {c for c in committed.keys() | rows if c not in used}
            layers = 0
            while doomed:
                parents = {i.parent for i in self.driver.walk()}
                parents |= {r.parent for r in self.meta.layers()}
                leaves = [c for c in doomed if c not in parents]
                if not leaves:
                    break
                for chain in leaves:
                    doomed.discard(chain)
                    self.meta.delete_layer(chain)
                    if chain in committed:
                        try:
                            self.driver.remove(chain)
                        except FailedPrecondition:
                            log.warning("gc: layer still has children", extra={"chain": chain})
                            continue
                    layers += 1
            keep = self.meta.referenced_blobs() | set(self._blobs)
            blobs = freed = 0
            for d in list(self.content.digests()):
                if d not in keep:
                    with contextlib.suppress(NotFound):
                        freed += self.content.size(d)
                    self.content.delete(d)
                    self._configs.pop(d, None)
                    blobs += 1
            return GcStats(layers=layers, blobs=blobs, bytes=freed)

    # layers
    def has_layer(self, chain_id: str) -> bool:
        return self.meta.layer(chain_id) is not None

    def unpack(self, ref: LayerRef, parent: str | None) -> None:
        """Unpack blob `ref.blob` as layer `ref.chain_id` on `parent` (once, verified)."""
        def work() -> None:
            if self.has_layer(ref.chain_id):
                return
            key = f"{EXTRACT_PREFIX}{secrets.token_hex(6)}-{dg.hex_of(ref.chain_id)[:12]}"
            self.driver.prepare(key, parent)
            try:
                with self.content.open(ref.blob) as raw:
                    reader = LayerReader(raw, max_bytes=self.limits.max_bytes)
                    with Prefetch(reader) as ahead:
                        stats = self.driver.apply(key, ahead, limits=self.limits)
                        ahead.drain()
                if reader.diff_id() != ref.diff_id:
                    raise InvalidArgument(
                        f"layer {ref.blob}: uncompressed content is {reader.diff_id()}, "
                        f"the image config says {ref.diff_id}")
                self.driver.commit(ref.chain_id, key)
            except BaseException:
                self.driver.remove(key)
                raise
            self.meta.add_layer(LayerRow(ref.chain_id, parent, ref.diff_id, stats.bytes,
                                         stats.entries), self.clock())
        self.layer_flight.do(ref.chain_id, work)

    def layers(self) -> list[Layer]:
        out = []
        for row in self.meta.layers():
            out.append(Layer(row.chain_id, row.parent, row.diff_id, row.size, row.entries,
                             tuple(self.meta.images_of_layer(row.chain_id))))
        return out

    # images
    def add_image(self, row: ImageRow) -> Image:
        for lr in row.layers:
            if not self.has_layer(lr.chain_id):
                raise FailedPrecondition(f"layer {lr.chain_id} of image {row.id} is missing")
        existed = self.meta.has_image(row.id)
        for name in row.refs:  # a tag moves: the old image keeps its other names
            self.meta.delete_ref(name)
        self.meta.put_image(row)
        if existed:
            self.gc()  # the same image through another manifest: the old blobs may go
        return self.image_by_id(row.id)

    def config_bytes(self, image_id: str) -> bytes:
        data = self._configs.get(image_id)
        if data is None:
            data = self.content.read(image_id)
            self._configs[image_id] = data
        return data

    def image_by_id(self, image_id: str) -> Image:
        row = self.meta.image(image_id)
        tags = tuple(r for r in row.refs if "@" not in r)
        digests = tuple(r for r in row.refs if "@" in r)
        size = row.manifest_size + row.config_size + sum(lr.blob_size for lr in row.layers)
        return Image(id=row.id, repo_tags=tags, repo_digests=digests, size=size,
                     manifest=row.manifest, index=row.index, layers=row.layers,
                     config=parse_config(self.config_bytes(row.id)), pulled_at=row.pulled_at)

    def images(self) -> list[Image]:
        return [self.image_by_id(i) for i in self.meta.image_ids()]

    def remove_image(self, image_id: str) -> GcStats:
        self.meta.image(image_id)  # NotFound if absent
        self.meta.delete_image(image_id)
        return self.gc()

    # container rootfs leases
    def acquire(self, key: str, image_id: str, *, readonly: bool = False) -> list[Mount]:
        """Create the rootfs snapshot `key` on image `image_id`; its layers stay until release."""
        if key.startswith(EXTRACT_PREFIX):
            raise InvalidArgument(f"rootfs key may not start with {EXTRACT_PREFIX!r}")
        top = self.image_by_id(image_id).top_layer
        with self._gc_lock:
            if self.meta.lease(key) is not None:
                raise AlreadyExists(f"rootfs {key!r} already exists")
            self.meta.add_lease(key, image_id, top, self.clock())
            try:
                if readonly:
                    return self.driver.view(key, top)
                return self.driver.prepare(key, top)
            except BaseException:
                self.meta.delete_lease(key)
                raise

    def mounts(self, key: str) -> list[Mount]:
        if self.meta.lease(key) is None:
            raise NotFound(f"rootfs {key!r} does not exist")
        return self.driver.mounts(key)

    def release(self, key: str) -> None:
        """Remove rootfs `key` (already unmounted by the caller) and let its layers go."""
        with self._gc_lock:
            if self.meta.lease(key) is None:
                raise NotFound(f"rootfs {key!r} does not exist")
            with contextlib.suppress(NotFound):
                self.driver.remove(key)
            self.meta.delete_lease(key)
            self.gc()

    def usage(self) -> tuple[int, int]:
        """(bytes, inodes) the store holds: blobs plus unpacked layers."""
        blobs = list(self.content.digests())
        size = 0
        for d in blobs:
            with contextlib.suppress(NotFound):
                size += self.content.size(d)
        rows = self.meta.layers()
        return size + sum(r.size for r in rows), len(blobs) + sum(r.entries for r in rows)
