"""Translator: engine containers to view entries, reused while nothing changed."""
from __future__ import annotations

import dataclasses
from typing import Any, cast

from cri.api import runtime_pb2 as pb
from cri.server.engine_runtime import Translator
from engine.errors import NotFound
from engine.execdriver.spec import InitSpec
from engine.runtime.api import ContainerInfo
from engine.runtime.spec import ContainerConfig, ImageConfig
from engine.runtime.state import ContainerState
from engine.runtime.status import Status
from engine.runtime.store import ContainerRecord


def info(cid: str, *, status: Status = Status.RUNNING, image: str = "busybox") -> ContainerInfo:
    rec = ContainerRecord(id=cid, sandbox_id="s" + cid, config=ContainerConfig(
        name="c", image=image, labels={"k": "v"}), image=ImageConfig(),
        spec=InitSpec(id=cid, rootfs="/x", args=("sh",)), log_path="/l", created_at=1)
    return ContainerInfo(record=rec, state=ContainerState(status=status, pid=9, created_at=1))


@dataclasses.dataclass(frozen=True)
class Image:
    id: str


class Images:
    def __init__(self) -> None:
        self.ids = {"busybox": "sha256:b", "pause": "sha256:p"}
        self.lookups = 0

    def status(self, ref: str) -> Image | None:
        self.lookups += 1
        return Image(self.ids[ref]) if ref in self.ids else None


class Runtime:
    def __init__(self) -> None:
        self.items: dict[str, ContainerInfo] = {}

    def list_containers(self) -> list[ContainerInfo]:
        return list(self.items.values())

    def container_status(self, cid: str) -> ContainerInfo:
        if cid not in self.items:
            raise NotFound(f"container {cid} not found")
        return self.items[cid]


def translator() -> tuple[Translator, Runtime, Images]:
    rt, images = Runtime(), Images()
    return Translator(cast(Any, rt), cast(Any, images)), rt, images


def test_entries_carry_the_engine_state() -> None:
    tr, rt, _ = translator()
    rt.items = {"a": info("a"), "b": info("b", status=Status.EXITED, image="gone")}
    by_id = {e.status.id: e for e in tr.load_all()}
    assert by_id["a"].status.state == pb.CONTAINER_RUNNING
    assert by_id["a"].status.image_id == "sha256:b" and by_id["a"].sandbox_id == "sa"
    assert by_id["a"].container.labels == {"k": "v"} and by_id["a"].pid == 9
    assert by_id["b"].status.state == pb.CONTAINER_EXITED and by_id["b"].status.image_id == ""


def test_an_unchanged_container_keeps_its_entry() -> None:
    tr, rt, _ = translator()
    rt.items = {"a": info("a")}
    first = tr.load_all()[0]
    rt.items = {"a": info("a")}  # equal, freshly read
    assert tr.load_all()[0] is first
    assert tr.load_one("a") is first


def test_a_changed_state_or_image_makes_a_new_entry() -> None:
    tr, rt, images = translator()
    rt.items = {"a": info("a")}
    first = tr.load_all()[0]
    rt.items = {"a": info("a", status=Status.EXITED)}
    exited = tr.load_all()[0]
    assert exited is not first and exited.status.state == pb.CONTAINER_EXITED
    images.ids["busybox"] = "sha256:new"  # the tag was pulled again
    assert tr.load_all()[0].status.image_id == "sha256:new"


def test_each_image_is_looked_up_once_per_load() -> None:
    tr, rt, images = translator()
    rt.items = {c: info(c) for c in "abcdef"} | {"p": info("p", image="pause")}
    tr.load_all()
    assert images.lookups == 2


def test_removed_containers_are_forgotten() -> None:
    tr, rt, _ = translator()
    rt.items = {"a": info("a")}
    first = tr.load_all()[0]
    rt.items = {}
    assert tr.load_all() == []
    rt.items = {"a": info("a")}
    assert tr.load_all()[0] is not first
