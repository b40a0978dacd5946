"""kill -9 at any moment leaves a store that the next open repairs."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.errors import FailedPrecondition
from engine.graph.store import LayerRow
from engine.images import ImageService
from tests.harness.prereq import REPO
from tests.unit.graph.conftest import assert_consistent, make_service
from tests.unit.graphdriver.tarmaker import Tar
from tests.unit.registry.fake import FakeRegistry, build_image, tar_of

CHILD = """
import sys
from pathlib import Path

import pytest
from engine.images import ImageService
from engine.registry.client import RegistryClient
from engine.registry.hosts import parse_hosts
from engine.registry.manifest import Platform
host, root = sys.argv[1], Path(sys.argv[2])
client = RegistryClient(parse_hosts({host: {"insecure": True}}),
                        platform=Platform("linux", "amd64"))
svc = ImageService(root, driver="vfs", client=client)
print("open", flush=True)
svc.pull(f"{host}/app:v1")
svc.remove(f"{host}/app:v1")
svc.pull(f"{host}/app:v1")
print("done", flush=True)
"""


def test_kill_9_during_pull_and_remove(tmp_path: Path, registry: FakeRegistry) -> None:
    layers = [Tar().file(f"d{i}/f{j}", os.urandom(20_000)).bytes() for i in range(4)
              for j in range(1)]
    built = build_image(layers)
    registry.push("app", "v1", built)
    registry.delay_blobs = 0.03
    root = tmp_path / "store"
    for delay in (0.05, 0.2, 0.4, 0.7, 1.0):
        proc = subprocess.Popen([sys.executable, "-c", CHILD, registry.host, str(root)],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"open\n", proc.stderr.read() if proc.stderr else ""
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
        svc = make_service(root, registry)
        try:
            assert_consistent(svc.graph)
            for img in svc.list():  # whatever survived is whole
                assert img.id == built.config_digest and len(img.layers) == 4
        finally:
            svc.close()
    svc = make_service(root, registry)
    try:
        assert svc.pull(f"{registry.host}/app:v1").id == built.config_digest
        assert_consistent(svc.graph)
    finally:
        svc.close()


def test_reopen_repairs_every_kind_of_leftover(tmp_path: Path, registry: FakeRegistry) -> None:
    registry.push("app", "v1", build_image([tar_of({"a": b"1"})]))
    root = tmp_path / "store"
    svc = make_service(root, registry)
    img = svc.pull(f"{registry.host}/app:v1")
    svc.create_rootfs("keep", img.id)
    g = svc.graph
    (g.content.ingest_dir / "half-written").write_bytes(b"x")
    g.content.put(b"orphan blob")
    g.driver.prepare("extract-deadbeef-1234", img.top_layer)
    g.driver.prepare("orphan-rootfs", None)
    g.driver.prepare("extract-x", None)
    g.driver.apply("extract-x", io.BytesIO(Tar().file("z", b"z").bytes()))
    g.driver.commit("sha256:" + "e" * 64, "extract-x")  # a committed layer with no row
    g.meta.add_lease("lost", img.id, img.top_layer, 0.0)  # a lease whose snapshot is gone
    g.meta.add_layer(LayerRow("sha256:" + "f" * 64, None, "sha256:" + "f" * 64, 1, 1), 0.0)
    svc.close()
    svc2: ImageService = make_service(root, registry)
    try:
        assert_consistent(svc2.graph)
        assert [i.id for i in svc2.list()] == [img.id]
        assert svc2.rootfs_mounts("keep")
        assert {i.key for i in svc2.graph.driver.walk()} == {img.top_layer, "keep"}
    finally:
        svc2.close()


def test_a_store_has_one_owner(tmp_path: Path, registry: FakeRegistry) -> None:
    svc = make_service(tmp_path / "s", registry)
    try:
        with pytest.raises(FailedPrecondition, match="in use"):
            make_service(tmp_path / "s", registry)
    finally:
        svc.close()
    make_service(tmp_path / "s", registry).close()  # free again once closed
