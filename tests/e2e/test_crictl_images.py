"""crictl's image commands against engined's image store, pulling from the local registry
through the mirror configuration (as critest will)."""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.test_crictl_basic import crictl
from tests.harness.engined import Engined, private_engined
from tests.harness.registry import LocalRegistry

pytestmark = pytest.mark.e2e

PAUSE = "registry.k8s.io/pause:3.10"


@pytest.fixture
def engined_with_registry(local_registry: LocalRegistry) -> Iterator[Engined]:
    with private_engined(registry_hosts=local_registry.root / "mirrors.yaml",
                         graph_driver="vfs") as daemon:
        yield daemon


def test_pull_list_inspect_remove(engined_with_registry: Engined) -> None:
    daemon = engined_with_registry
    assert json.loads(crictl(daemon, "images", "-o", "json").stdout)["images"] == []
    pulled = crictl(daemon, "pull", PAUSE)
    assert pulled.returncode == 0, pulled.stderr + daemon.log.read_text()[-3000:]
    image_id = pulled.stdout.strip().rsplit(" ", 1)[-1]
    assert image_id.startswith("sha256:")
    listed = json.loads(crictl(daemon, "images", "-o", "json").stdout)["images"]
    assert [i["id"] for i in listed] == [image_id]
    assert PAUSE in listed[0]["repoTags"]
    inspected = crictl(daemon, "inspecti", "-o", "json", PAUSE)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["status"]["id"] == image_id
    fsinfo = crictl(daemon, "imagefsinfo", "-o", "json")
    assert fsinfo.returncode == 0, fsinfo.stderr
    usage = json.loads(fsinfo.stdout)["status"]["imageFilesystems"][0]
    assert int(usage["usedBytes"]["value"]) > 0
    removed = crictl(daemon, "rmi", image_id)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(crictl(daemon, "images", "-o", "json").stdout)["images"] == []


def test_pull_of_a_missing_image_fails_precisely(engined_with_registry: Engined) -> None:
    out = crictl(engined_with_registry, "pull", "registry.k8s.io/does-not-exist:1")
    assert out.returncode != 0
    assert "NotFound" in out.stderr or "not found" in out.stderr.lower()
