"""ContainerView: engine containers translated once, reused while nothing changed."""
from __future__ import annotations

import dataclasses

import pytest

from cri.api import runtime_pb2 as pb
from cri.server.container_view import ContainerView
from cri.server.engine_runtime import container_status
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


class Engine:
    """The runtime's reads: containers by ID, a generation bumped by `change`."""

    def __init__(self) -> None:
        self.items: dict[str, ContainerInfo] = {}
        self.gen = 0
        self.lists = 0
        self.during_list: list[str] = []  # containers to change while a listing is read

    def change(self, cid: str, **state: object) -> None:
        old = self.items[cid]
        self.items[cid] = dataclasses.replace(
            old, state=dataclasses.replace(old.state, **state))  # type: ignore[arg-type]
        self.gen += 1

    def generation(self) -> int:
        return self.gen

    def container_status(self, cid: str) -> ContainerInfo:
        if cid not in self.items:
            raise NotFound(f"container {cid} not found")
        return self.items[cid]

    def list_containers(self, sid: str | None = None) -> list[ContainerInfo]:
        self.lists += 1
        out = [i for c, i in sorted(self.items.items())
               if sid is None or i.record.sandbox_id == sid]
        for cid in self.during_list:
            self.change(cid, status=Status.EXITED, exit_code=1)
        self.during_list = []
        return out


class Images:
    def __init__(self) -> None:
        self.ids = {"busybox": "sha256:b", "pause": "sha256:p"}
        self.lookups = 0

    def __call__(self, ref: str) -> str:
        self.lookups += 1
        return self.ids.get(ref, "")


@pytest.fixture
def engine() -> Engine:
    e = Engine()
    e.items = {"a": info("a"), "b": info("b", status=Status.EXITED, image="gone")}
    return e


def view_of(engine: Engine, images: Images | None = None) -> ContainerView:
    return ContainerView(engine, translate=lambda i, image_id: container_status(
        i, image_id=image_id), image_id_of=images or Images())


def test_entries_carry_the_engine_state(engine: Engine) -> None:
    by_id = {e.status.id: e for e in view_of(engine).entries()}
    assert by_id["a"].status.state == pb.CONTAINER_RUNNING
    assert by_id["a"].status.image_id == "sha256:b" and by_id["a"].sandbox_id == "sa"
    assert by_id["a"].container.labels == {"k": "v"} and by_id["a"].pid == 9
    assert by_id["b"].status.state == pb.CONTAINER_EXITED and by_id["b"].status.image_id == ""


def test_an_unchanged_container_keeps_its_entry_and_a_changed_one_does_not(
        engine: Engine) -> None:
    view = view_of(engine)
    first = view.status("a")
    assert view.status("a") is first and view.entries()[0] is first
    engine.items["a"] = dataclasses.replace(engine.items["a"])  # equal, freshly read
    assert view.status("a").status is first.status
    engine.change("a", status=Status.EXITED, exit_code=3)
    changed = view.status("a")
    assert changed is not first
    assert (changed.status.state, changed.status.exit_code) == (pb.CONTAINER_EXITED, 3)


def test_the_image_id_is_the_one_the_container_was_created_from(engine: Engine) -> None:
    images = Images()
    view = view_of(engine, images)
    view.pin_image("a", "sha256:created-from")
    assert view.status("a").status.image_id == "sha256:created-from"
    for _ in range(5):
        view.status("b")
        view.entries()
    assert images.lookups == 1  # b's, once: then kept like a pinned one
    images.ids["busybox"] = "sha256:pulled-again"  # the tag moved: running containers keep
    engine.change("a", status=Status.EXITED)
    assert view.status("a").status.image_id == "sha256:created-from"


def test_the_listing_is_reused_while_the_generation_stays(engine: Engine) -> None:
    view = view_of(engine)
    first = view.containers()
    assert [c.id for c in first] == ["a", "b"]
    for _ in range(20):
        assert view.containers() is first
    assert engine.lists == 1
    engine.change("a", status=Status.EXITED, exit_code=2)
    second = view.containers()
    assert second is not first and second[0].state == pb.CONTAINER_EXITED


def test_a_change_while_listing_shows_on_the_next_read(engine: Engine) -> None:
    view = view_of(engine)
    engine.during_list = ["a"]  # exits after the listing read it, before it is kept
    assert view.containers()[0].state == pb.CONTAINER_RUNNING
    assert view.containers()[0].state == pb.CONTAINER_EXITED


def test_removed_containers_are_forgotten(engine: Engine) -> None:
    view = view_of(engine)
    first = view.status("a")
    del engine.items["a"]
    engine.gen += 1
    assert [c.id for c in view.containers()] == ["b"]
    with pytest.raises(NotFound):
        view.status("a")
    engine.items["a"] = info("a")
    assert view.status("a") is not first


def test_one_sandbox(engine: Engine) -> None:
    assert [e.status.id for e in view_of(engine).entries("sb")] == ["b"]
