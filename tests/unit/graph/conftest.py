from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.graph.graph import Graph
from engine.graphdriver.base import Kind
from engine.images import ImageService
from engine.registry.client import RegistryClient
from engine.registry.hosts import parse_hosts
from engine.registry.manifest import Platform
from tests.unit.registry.fake import FakeRegistry, running


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    yield from running()


def make_service(root: Path, reg: FakeRegistry, **kw: object) -> ImageService:
    client = RegistryClient(parse_hosts({reg.host: {"insecure": True}}),
                            platform=Platform("linux", "amd64"), sleep=lambda _: None)
    return ImageService(root, driver=str(kw.pop("driver", "vfs")), client=client,
                        **kw)  # type: ignore[arg-type]


@pytest.fixture
def service(tmp_path: Path, registry: FakeRegistry) -> Iterator[ImageService]:
    svc = make_service(tmp_path / "store", registry)
    yield svc
    svc.close()


def assert_consistent(g: Graph) -> None:
    """The invariants a store must satisfy after any operation or crash + reopen."""
    assert not list(g.content.ingest_dir.iterdir()), "ingest leftovers"
    snaps = {i.key: i for i in g.driver.walk()}
    assert not [k for k in snaps if k.startswith("extract-")], "half-unpacked layers"
    committed = {k for k, i in snaps.items() if i.kind is Kind.COMMITTED}
    rows = {r.chain_id for r in g.meta.layers()}
    assert committed == rows, "snapshots and layer rows disagree"
    assert set(g.content.digests()) == g.meta.referenced_blobs(), "orphan or missing blobs"
    assert g.meta.referenced_chains() <= rows, "an image uses a missing layer"
    active = {k for k, i in snaps.items() if i.kind is not Kind.COMMITTED}
    assert active == set(g.meta.leases()), "rootfs snapshots and leases disagree"
