"""Pull: resolve -> config -> layers downloaded concurrently -> unpacked in order -> image.

Layers download in a thread pool while the calling thread unpacks them in order as they
arrive. A blob already in the content store is not downloaded, a layer already unpacked is
not unpacked; concurrent pulls of the same blob or layer share one download/unpack
(single-flight). Until the image row is written everything this pull touches is protected
from GC; if the pull fails, a GC removes what it left unreferenced, so nothing half-made
remains and a retry starts clean.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from engine.errors import InvalidArgument
from engine.graph import digest as dg
from engine.graph.graph import Graph
from engine.graph.model import Image, LayerRef, parse_config
from engine.graph.store import ImageRow
from engine.registry.auth import AuthConfig
from engine.registry.client import Document, RegistryClient, Resolved
from engine.registry.manifest import Descriptor
from engine.registry.reference import Reference


@dataclasses.dataclass(frozen=True)
class PullEvent:
    """Progress of one pull. `layer` is a blob digest ("" for image-level events)."""

    phase: str  # resolved | exists | downloading | downloaded | unpacking | unpacked | done
    layer: str = ""
    current: int = 0
    total: int = 0


ProgressFn = Callable[[PullEvent], None]


def _noop(_: PullEvent) -> None:
    pass


class Puller:
    def __init__(self, graph: Graph, client: RegistryClient, *, concurrency: int = 3) -> None:
        self.graph = graph
        self.client = client
        self.concurrency = concurrency

    def pull(self, ref: Reference, auth: AuthConfig | None = None,
             progress: ProgressFn | None = None) -> Image:
        report = progress or _noop
        resolved = self.client.resolve(ref, auth)
        report(PullEvent("resolved", total=len(resolved.parsed.layers)))
        man = resolved.parsed
        docs = [resolved.manifest] + ([resolved.index] if resolved.index else [])
        blobs = [d.digest for d in docs] + [man.config.digest] + [d.digest for d in man.layers]
        try:
            with self.graph.protect(blobs, ()):
                image = self._pull(ref, resolved, report)
        except BaseException:
            self.graph.gc()  # whatever this pull left unreferenced goes; a retry starts clean
            raise
        report(PullEvent("done"))
        return image

    def _pull(self, ref: Reference, resolved: Resolved, report: ProgressFn) -> Image:
        man = resolved.parsed
        for doc in [resolved.manifest] + ([resolved.index] if resolved.index else []):
            self.graph.content.put(doc.data, doc.digest)
        config = self._config(resolved)
        diff_ids = parse_config(config).diff_ids
        if len(diff_ids) != len(man.layers):
            raise InvalidArgument(
                f"{ref}: manifest has {len(man.layers)} layers, config has "
                f"{len(diff_ids)} diff_ids")
        chains = dg.chain_ids(diff_ids)
        refs = [LayerRef(d.digest, d.size, d.media_type, diff, chain)
                for d, diff, chain in zip(man.layers, diff_ids, chains, strict=True)]
        with self.graph.protect((), chains):
            self._layers(resolved, refs, report)
            return self._commit(resolved, refs, len(config))

    def _config(self, r: Resolved) -> bytes:
        desc = r.parsed.config
        self._download(r, desc, _noop)
        data = self.graph.content.read(desc.digest)
        return data

    def _download(self, r: Resolved, desc: Descriptor, report: ProgressFn) -> None:
        content = self.graph.content

        def work() -> None:
            if content.exists(desc.digest):
                report(PullEvent("exists", desc.digest, desc.size, desc.size))
                return
            done = 0

            def step(n: int) -> None:
                nonlocal done
                done += n
                report(PullEvent("downloading", desc.digest, done, desc.size))
            self.client.fetch_blob(r.session, desc,
                                   lambda: content.writer(desc.digest, desc.size), step)
            report(PullEvent("downloaded", desc.digest, desc.size, desc.size))
        self.graph.blob_flight.do(desc.digest, work)

    def _layers(self, r: Resolved, refs: list[LayerRef], report: ProgressFn) -> None:
        """Download what is missing (concurrently), unpack what is missing (in order).

        A blob is kept even when its layer is already unpacked (another image reached the
        same diff ID through another compression), so `save` can always export it."""
        descs = {d.digest: d for d in r.parsed.layers}
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="pull") as pool:
            futures: list[Future[None]] = [
                pool.submit(self._download, r, descs[lr.blob], report) for lr in refs]
            try:
                for i, (lr, fut) in enumerate(zip(refs, futures, strict=True)):
                    fut.result()
                    if self.graph.has_layer(lr.chain_id):
                        continue
                    report(PullEvent("unpacking", lr.blob, 0, lr.blob_size))
                    self.graph.unpack(lr, refs[i - 1].chain_id if i else None)
                    report(PullEvent("unpacked", lr.blob, lr.blob_size, lr.blob_size))
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise

    def _commit(self, r: Resolved, refs: list[LayerRef], config_size: int) -> Image:
        names = [str(r.ref.with_digest(r.digest))]
        if r.ref.tag:
            names.append(f"{r.ref.name}:{r.ref.tag}")
        idx: Document | None = r.index
        row = ImageRow(id=r.parsed.config.digest, manifest=r.manifest.digest,
                       manifest_size=len(r.manifest.data), index=idx.digest if idx else None,
                       index_size=len(idx.data) if idx else 0, config_size=config_size,
                       pulled_at=self.graph.clock(), refs=tuple(names), layers=tuple(refs))
        return self.graph.add_image(row)
