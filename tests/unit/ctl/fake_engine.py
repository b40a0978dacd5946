"""A fake of the engine's ImageService for the EngineService tests."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.errors import InvalidArgument, NotFound, Unavailable
from engine.graph.graph import GcStats
from engine.graph.model import Image, ImageConfig, LayerRef
from engine.graph.pull import ProgressFn, PullEvent
from engine.graph.tree import LayerNode
from engine.registry.auth import AuthConfig

LAYER_A = "sha256:" + "a" * 64
LAYER_B = "sha256:" + "b" * 64


def image(n: int, *tags: str) -> Image:
    return Image(id="sha256:" + f"{n:064x}", repo_tags=tags,
                 repo_digests=tuple(f"{t.rsplit(':', 1)[0]}@sha256:{'d' * 64}" for t in tags),
                 size=1000 * n, manifest="sha256:" + "e" * 64, index=None,
                 layers=(LayerRef(LAYER_A, 10, "application/vnd.oci.image.layer.v1.tar+gzip",
                                  LAYER_A, LAYER_A),),
                 config=ImageConfig(architecture="amd64", cmd=("sh",),
                                    labels=(("k", "v"),)),
                 pulled_at=1.5)


class FakeImageEngine:
    def __init__(self) -> None:
        self.images: dict[str, Image] = {}
        self.auths: list[AuthConfig | None] = []
        self.loaded: list[bytes] = []
        self.calls: list[str] = []

    def pull(self, ref: str, auth: AuthConfig | None = None,
             progress: ProgressFn | None = None) -> Image:
        self.auths.append(auth)
        if ref.startswith("unreachable.example/"):
            raise Unavailable(f"registry for {ref} cannot be reached")
        report = progress or (lambda e: None)
        report(PullEvent("resolved", total=2))
        report(PullEvent("exists", LAYER_A))
        report(PullEvent("downloading", LAYER_B, 5, 10))
        report(PullEvent("downloaded", LAYER_B, 10, 10))
        report(PullEvent("unpacked", LAYER_B, 10, 10))
        report(PullEvent("done"))
        img = image(len(self.images) + 1, ref)
        self.images[img.id] = img
        return img

    def get(self, ref: str) -> Image:
        for img in self.images.values():
            if ref in (img.id, *img.repo_tags) or img.id.startswith("sha256:" + ref):
                return img
        raise NotFound(f"image {ref!r} not found")

    def remove(self, ref: str) -> GcStats:
        self.calls.append(f"remove {ref}")
        del self.images[self.get(ref).id]
        return GcStats(1, 1, 10)

    def untag(self, ref: str) -> None:
        self.calls.append(f"untag {ref}")
        img = self.get(ref)
        self.images[img.id] = dataclasses.replace(
            img, repo_tags=tuple(t for t in img.repo_tags if t != ref))

    def layer_graph(self) -> list[LayerNode]:
        ids = tuple(self.images)
        top = LayerNode(LAYER_B, LAYER_B, 20, ids[:1], ("busybox:1",), ())
        return [LayerNode(LAYER_A, LAYER_A, 2_500_000, ids, (), (top,))]

    def load(self, path: Path) -> list[Image]:
        data = path.read_bytes()
        if not data.startswith(b"TAR"):
            raise InvalidArgument(f"archive {path.name}: not a tar archive")
        self.loaded.append(data)
        img = image(90, "loaded:1")
        self.images[img.id] = img
        return [img]

    def save(self, refs: list[str], path: Path) -> None:
        imgs = [self.get(r) for r in refs]
        path.write_bytes(b"TAR" + b"".join(i.id.encode() for i in imgs) * 50_000)
