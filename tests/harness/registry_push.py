"""Pushing the standard image set, and the files other components read afterwards
(the mirror map `mirrors.yaml` and the shell-assignment file `env`)."""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.harness import images
from tests.harness.images_build import Pushable
from tests.harness.images_rootfs import busybox_binary
from tests.harness.oci_image import Image
from tests.harness.oci_layer import Layer
from tests.harness.registry_client import RegistryClient

log = logging.getLogger(__name__)
HARNESS = Path(__file__).resolve().parent


def fingerprint() -> str:
    """Changes whenever the images could change: busybox itself or the code that builds
    and names them."""
    h = hashlib.sha256(busybox_binary())
    for path in sorted(HARNESS.glob("*.py")):
        if path.name.startswith(("oci_", "images")):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:32]


@dataclass
class Pusher:
    """Pushes images into one registry, mounting blobs it already pushed to another repo
    instead of uploading them again."""

    client: RegistryClient
    uploaded: int = 0
    mounted: int = 0

    def __post_init__(self) -> None:
        self._where: dict[str, str] = {}

    def share(self, other: Pusher) -> None:
        """Use one blob -> repository map with `other` (dict updates are atomic)."""
        self._where = other._where

    def _blobs(self, item: Pushable) -> Iterable[tuple[str, bytes]]:
        children = [item] if isinstance(item, Image) else list(item.images)
        for image in children:
            for blob in image.blobs():
                yield blob.digest, blob.blob if isinstance(blob, Layer) else blob.data

    def push(self, repo: str, tag: str, item: Pushable) -> str:
        for digest, data in self._blobs(item):
            source = self._where.get(digest)
            outcome = self.client.push_blob(repo, data, digest=digest,
                                            mount_from=source if source != repo else None)
            self.mounted += outcome == "mounted"
            self.uploaded += outcome == "uploaded"
            self._where.setdefault(digest, repo)
        if isinstance(item, Image):
            return self.client.put_manifest(repo, tag, item.manifest)
        for child in item.images:
            self.client.put_manifest(repo, child.manifest.digest, child.manifest)
        return self.client.put_manifest(repo, tag, item.blob)


def build_all(selection: Iterable[tuple[str, str, Callable[[], Pushable]]]
              ) -> list[tuple[str, str, Pushable]]:
    """Build every image; a builder listed under several names is built once. Images
    whose builder cannot run on this machine are left out with a warning."""
    out: list[tuple[str, str, Pushable]] = []
    cache: dict[int, Pushable] = {}
    for repo, tag, build in selection:
        try:
            item = cache.get(id(build))
            if item is None:
                item = cache[id(build)] = build()
        except NotImplementedError as exc:
            log.warning("not pushing %s:%s on this machine: %s", repo, tag, exc)
            continue
        out.append((repo, tag, item))
    return out


def push_all(client: RegistryClient, built: list[tuple[str, str, Pushable]], *,
             workers: int = 4) -> dict[str, str]:
    """Push everything; returns {"repo:tag": manifest digest}. The first image goes alone
    (it uploads the shared base layer); the rest go `workers` at a time, each worker on its
    own connection and its own repositories, mounting blobs another repository has."""
    if not built:
        return {}
    first = Pusher(client)
    pushed = {f"{built[0][0]}:{built[0][1]}": first.push(*built[0])}
    pushers = [first] + [Pusher(client.clone()) for _ in range(max(workers, 1) - 1)]
    for other in pushers[1:]:
        other.share(first)
    # One repository is only ever written by one worker: docker-registry 2.8 can answer 500
    # to a HEAD while another client links the same blob into the same repository.
    lanes: list[list[tuple[str, str, Pushable]]] = [[] for _ in pushers]
    lane_of: dict[str, int] = {built[0][0]: 0}
    for item in built[1:]:
        lane = lane_of.setdefault(item[0], len(lane_of) % len(pushers))
        lanes[lane].append(item)

    def run(pusher: Pusher, lane: list[tuple[str, str, Pushable]]) -> dict[str, str]:
        return {f"{repo}:{tag}": pusher.push(repo, tag, item) for repo, tag, item in lane}

    try:
        with ThreadPoolExecutor(max_workers=len(pushers)) as pool:
            for result in pool.map(run, pushers, lanes):
                pushed.update(result)
    finally:
        for other in pushers[1:]:
            other.client.close()
    log.info("pushed %d tags to %s (%d blobs uploaded, %d mounted)", len(pushed),
             client.host, sum(p.uploaded for p in pushers), sum(p.mounted for p in pushers))
    return {ref: pushed[ref] for ref in (f"{r}:{t}" for r, t, _ in built)}


def verify_pushed(client: RegistryClient, pushed: dict[str, str]) -> bool:
    """Every tag still resolves to the digest we pushed (nothing deleted or overwritten)."""
    for ref, digest in pushed.items():
        repo, _, tag = ref.rpartition(":")
        if client.manifest_digest(repo, tag) != digest:
            return False
    return True


def mirrors(host: str) -> dict[str, dict[str, object]]:
    """{upstream host: {endpoint: [http://<local>], upstream: false}} for the engine.

    `upstream: false` makes the mirror the only place content comes from: an image the
    local registry lacks fails to pull instead of falling back to the real host.
    """
    return {upstream: {"endpoint": [f"http://{host}"], "upstream": False}
            for upstream in images.MIRROR_HOSTS}


def containerd_hosts_toml(upstream: str, host: str) -> str:
    """A containerd `config_path` (certs.d) entry serving `upstream` from the local registry.

    containerd falls back to `server` after the listed hosts; pointing `server` at the local
    registry too means no pull ever leaves the machine.
    """
    return (f'server = "http://{host}"\n\n[host."http://{host}"]\n'
            '  capabilities = ["pull", "resolve"]\n')


def write_outputs(directory: Path, *, env: dict[str, str], host: str) -> None:
    """`mirrors.yaml`, `env`, and `certs.d/<upstream>/hosts.toml` for containerd."""
    _atomic(directory / "mirrors.yaml", yaml.safe_dump(mirrors(host), sort_keys=True))
    _atomic(directory / "env", "".join(f"{k}={v}\n" for k, v in env.items()))
    for upstream in images.MIRROR_HOSTS:
        target = directory / "certs.d" / upstream
        target.mkdir(parents=True, exist_ok=True)
        _atomic(target / "hosts.toml", containerd_hosts_toml(upstream, host))


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
