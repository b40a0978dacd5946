"""enginectl's image commands against a real engined pulling from the local registry."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.e2e.enginectl_cli import enginectl, ok
from tests.e2e.test_crictl_images import engined_with_registry
from tests.harness.engined import Engined, private_engined
from tests.harness.registry import LocalRegistry

pytestmark = pytest.mark.e2e
__all__ = ["engined_with_registry"]

PAUSE = "registry.k8s.io/pause:3.10"
BUSYBOX = "docker.io/library/busybox:1.36"


def image_ids(daemon: Engined) -> dict[str, str]:
    return {tag: i["id"] for i in json.loads(ok(daemon, "images", "-o", "json"))
            for tag in i.get("repoTags", [])}


def test_pull_images_inspect_graph(engined_with_registry: Engined) -> None:
    daemon = engined_with_registry
    assert json.loads(ok(daemon, "images", "-o", "json")) == []
    pulled = enginectl(daemon, "pull", PAUSE)
    assert pulled.returncode == 0, pulled.stderr
    assert "Pull complete" in pulled.stderr and "\x1b[" not in pulled.stderr  # not a TTY
    pause_id = pulled.stdout.splitlines()[-1].removeprefix("Image ID: ")
    busybox_id = ok(daemon, "pull", "-q", BUSYBOX).strip()
    assert image_ids(daemon) == {PAUSE: pause_id, BUSYBOX: busybox_id}
    table = ok(daemon, "images").splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "SIZE"]
    assert ["registry.k8s.io/pause", "3.10", pause_id[7:19]] == table[2].split()[:3]

    [detail] = json.loads(ok(daemon, "inspect", pause_id[7:19]))
    assert (detail["kind"], detail["id"]) == ("image", pause_id)
    assert detail["config"]["entrypoint"] == ["/pause"]
    chains = {tag: [layer["chainId"] for layer in json.loads(ok(daemon, "inspect", tag))[0]
                    ["layers"]] for tag in (PAUSE, BUSYBOX)}

    nodes: dict[str, dict[str, object]] = {}

    def walk(node: dict[str, object]) -> None:
        nodes[str(node["chainId"])] = node
        for child in node.get("children", []):  # type: ignore[attr-defined]
            walk(child)

    for root in json.loads(ok(daemon, "graph", "-o", "json")):
        walk(root)
    assert set(nodes) == set(chains[PAUSE]) | set(chains[BUSYBOX])
    for tag, ids in chains.items():
        assert tag in nodes[ids[-1]]["tops"]  # type: ignore[operator]
    for chain, node in nodes.items():
        users = {t for t, ids in chains.items() if chain in ids}
        assert len(node["usedBy"]) == len(users)  # type: ignore[arg-type]
    tree = ok(daemon, "graph")
    assert f"{len(nodes)} layers" in tree.splitlines()[-1]
    if set(chains[PAUSE]) & set(chains[BUSYBOX]):
        assert "shared by 2 images" in tree


def test_save_rmi_load_round_trip(engined_with_registry: Engined, tmp_path: Path) -> None:
    daemon = engined_with_registry
    ok(daemon, "pull", PAUSE)
    ok(daemon, "pull", BUSYBOX)
    before = image_ids(daemon)
    archive = tmp_path / "images.tar"
    ok(daemon, "save", "-o", str(archive), PAUSE, BUSYBOX)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"index.json", "manifest.json", "oci-layout"} <= names
    removed = ok(daemon, "rmi", PAUSE, before[BUSYBOX])
    assert f"Untagged: {PAUSE}" in removed
    assert f"Deleted: {before[PAUSE]}" in removed and f"Deleted: {before[BUSYBOX]}" in removed
    assert json.loads(ok(daemon, "images", "-o", "json")) == []
    loaded = ok(daemon, "load", "-i", str(archive))
    assert set(loaded.splitlines()) == {f"Loaded image: {PAUSE}", f"Loaded image: {BUSYBOX}"}
    assert image_ids(daemon) == before


def test_errors_are_one_line_with_docker_exit_codes(engined_with_registry: Engined,
                                                    tmp_path: Path) -> None:
    daemon = engined_with_registry
    missing = enginectl(daemon, "rmi", "registry.k8s.io/none:1")
    assert missing.returncode == 125
    assert missing.stderr == "enginectl: NOT_FOUND: image 'registry.k8s.io/none:1' not found\n"
    pull = enginectl(daemon, "pull", "registry.k8s.io/does-not-exist:1")
    assert pull.returncode == 125
    assert pull.stderr.startswith("enginectl: NOT_FOUND: ")
    assert pull.stderr.count("\n") == 1
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar")
    load = enginectl(daemon, "load", "-i", str(bad))
    assert load.returncode == 125 and "INVALID_ARGUMENT" in load.stderr
    assert json.loads(ok(daemon, "images", "-o", "json")) == []
    stale = Path(daemon.workdir) / "root" / "enginectl-spool"
    assert not stale.exists() or list(stale.iterdir()) == []


def test_pull_with_credentials_from_the_tls_registry(local_registry: LocalRegistry,
                                                     tmp_path: Path) -> None:
    hosts_file = local_registry.hosts_with_tls(tmp_path)
    ref = f"{local_registry.tls_host}/kubelet-py/busybox:latest"
    with private_engined(registry_hosts=hosts_file, graph_driver="vfs") as daemon:
            denied = enginectl(daemon, "pull", ref)
            assert denied.returncode == 125
            assert denied.stderr.startswith("enginectl: ") and denied.stderr.count("\n") == 1
            wrong = enginectl(daemon, "pull", "--creds", f"{local_registry.username}:nope", ref)
            assert wrong.returncode == 125
            image_id = ok(daemon, "pull", "-q", "--creds",
                          f"{local_registry.username}:{local_registry.password}", ref).strip()
            assert image_ids(daemon) == {ref: image_id}
