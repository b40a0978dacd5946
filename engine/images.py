"""The image service: what the CRI layer (and enginectl through engined) calls.

    svc = ImageService(root, driver="overlay", hosts=load_hosts(path))
    img = svc.pull("busybox", auth=AuthConfig(...), progress=callback)  # -> Image
    svc.list(); svc.status("busybox") -> Image | None; svc.remove("busybox"); svc.fs_info()
    svc.load(path) / svc.save(["busybox"], path)                          # archives
    mounts = svc.create_rootfs(container_id, img.id)  # runtime: the container's rootfs
    svc.remove_rootfs(container_id)                    # after unmounting it

Every method is thread-safe and raises only engine/errors.py classes. `progress` is called
from worker threads with PullEvent values (per-layer phase and bytes) for progress bars.
"""
from __future__ import annotations

import builtins
import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path

from engine.errors import InvalidArgument, NotFound
from engine.graph.graph import GcStats, Graph
from engine.graph.model import Image, Layer
from engine.graph.pull import ProgressFn, Puller, PullEvent
from engine.graph.tree import LayerNode, layer_forest
from engine.graphdriver import new_driver
from engine.graphdriver.base import Mount, Usage
from engine.graphdriver.unpack import Limits
from engine.registry.auth import AuthConfig
from engine.registry.client import RegistryClient
from engine.registry.hosts import Hosts
from engine.registry.reference import parse

__all__ = ["AuthConfig", "FsInfo", "Image", "ImageService", "PullEvent"]
_HEX = re.compile(r"^(sha256:)?([a-f0-9]{12,64})$")


@dataclasses.dataclass(frozen=True)
class FsInfo:
    mountpoint: str
    used_bytes: int
    inodes_used: int
    timestamp_ns: int


class ImageService:
    def __init__(self, root: Path, *, driver: str = "overlay", hosts: Hosts | None = None,
                 docker_config: Path | None = None, limits: Limits | None = None,
                 client: RegistryClient | None = None, concurrency: int = 3,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = root
        gd = new_driver(driver, root / driver)
        try:
            self.graph = Graph(root / "graph", gd, limits=limits, clock=clock)
        except BaseException:
            gd.close()
            raise
        self.client = client or RegistryClient(hosts, docker_config=docker_config)
        self._puller = Puller(self.graph, self.client, concurrency=concurrency)

    def close(self) -> None:
        self.graph.close()

    def pull(self, ref: str, auth: AuthConfig | None = None,
             progress: ProgressFn | None = None) -> Image:
        return self._puller.pull(parse(ref), auth, progress)

    def resolve_id(self, ref: str) -> str:
        """An image ID from an ID, an ID prefix (>= 12 hex), `name[:tag]` or `name@digest`."""
        m = _HEX.match(ref)
        if m:
            ids = self.graph.meta.ids_with_prefix("sha256:" + m.group(2))
            if len(ids) == 1:
                return ids[0]
            if len(ids) > 1:
                raise InvalidArgument(f"image ID prefix {ref!r} is ambiguous")
            if m.group(1):
                raise NotFound(f"image {ref} not found")
        r = parse(ref)
        if r.digest:
            ids = self.graph.meta.ids_by_manifest(r.name, r.digest)
            if ids:
                return ids[0]
        else:
            found = self.graph.meta.lookup_ref(str(r))
            if found:
                return found
        raise NotFound(f"image {ref!r} not found")

    def get(self, ref: str) -> Image:
        return self.graph.image_by_id(self.resolve_id(ref))

    def status(self, ref: str) -> Image | None:
        try:
            return self.get(ref)
        except NotFound:
            return None

    def list(self) -> list[Image]:
        return self.graph.images()

    def remove(self, ref: str) -> GcStats:
        """Remove the image `ref` names, with all its references (CRI RemoveImage)."""
        return self.graph.remove_image(self.resolve_id(ref))

    def untag(self, ref: str) -> None:
        """Remove one reference; the image goes when it was its last (docker rmi <tag>)."""
        name = str(parse(ref))
        image_id = self.graph.meta.delete_ref(name)
        if image_id is None:
            raise NotFound(f"reference {ref!r} not found")
        if not self.graph.meta.image(image_id).refs:
            self.graph.remove_image(image_id)

    def layers(self) -> builtins.list[Layer]:
        return self.graph.layers()

    def layer_graph(self) -> builtins.list[LayerNode]:
        """The layer forest with the images on it (`enginectl graph`)."""
        return layer_forest(self.graph.layers(), self.graph.images())

    def gc(self) -> GcStats:
        return self.graph.gc()

    def fs_info(self) -> FsInfo:
        used, inodes = self.graph.usage()
        return FsInfo(mountpoint=str(self.root), used_bytes=used, inodes_used=inodes,
                      timestamp_ns=time.time_ns())

    def load(self, path: Path) -> builtins.list[Image]:
        from engine.archive.load import load_archive
        return load_archive(self.graph, path)

    def save(self, refs: builtins.list[str], path: Path) -> None:
        from engine.archive.save import save_archive
        images = [self.get(r) for r in refs]
        save_archive(self.graph, images, refs, path)

    # container root filesystems
    def create_rootfs(self, key: str, image: str, *,
                      readonly: bool = False) -> builtins.list[Mount]:
        return self.graph.acquire(key, self.resolve_id(image), readonly=readonly)

    def rootfs_mounts(self, key: str) -> builtins.list[Mount]:
        return self.graph.mounts(key)

    def rootfs_usage(self, key: str) -> Usage:
        """Bytes and inodes of the container's own writable layer (CRI ContainerStats)."""
        self.graph.mounts(key)  # NotFound for an unknown key
        return self.graph.driver.usage(key)

    def remove_rootfs(self, key: str) -> None:
        """Remove the rootfs (the caller unmounted it); layers no one uses then go."""
        self.graph.release(key)
