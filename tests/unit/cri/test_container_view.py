"""ContainerView: reads from memory, never older than a verb that already answered."""
from __future__ import annotations

import threading

import pytest

from cri.api import runtime_pb2 as pb
from cri.server.container_view import ContainerView, Entry, entry
from engine.errors import NotFound


class Disk:
    """What the engine would read: container ID -> (sandbox ID, state); counts reads."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, int]] = {}
        self.full_loads = 0
        self.one_loads = 0
        self.during_load: list[threading.Event] = []

    def _entry(self, cid: str) -> Entry:
        sid, state = self.items[cid]
        return entry(pb.ContainerStatus(id=cid, state=state,  # type: ignore[arg-type]
                                        metadata=pb.ContainerMetadata(name=cid)),
                     sandbox_id=sid, pid=7)

    def load_all(self) -> list[Entry]:
        self.full_loads += 1
        out = [self._entry(c) for c in sorted(self.items)]
        return out

    def load_one(self, cid: str) -> Entry:
        self.one_loads += 1
        if cid not in self.items:
            raise NotFound(f"container {cid} not found")
        return self._entry(cid)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def disk() -> Disk:
    d = Disk()
    d.items = {"a1": ("s1", pb.CONTAINER_RUNNING), "b1": ("s2", pb.CONTAINER_RUNNING)}
    return d


def view_of(disk: Disk, clock: Clock | None = None) -> ContainerView:
    return ContainerView(load_all=disk.load_all, load_one=disk.load_one, max_age_s=3.0,
                         clock=clock or Clock())


def test_reads_come_from_memory_after_one_load(disk: Disk) -> None:
    view = view_of(disk)
    assert [c.id for c in view.containers()] == ["a1", "b1"]
    for _ in range(50):
        assert view.status("a1").status.state == pb.CONTAINER_RUNNING
        view.containers()
    assert (disk.full_loads, disk.one_loads) == (1, 0)


def test_an_unchanged_listing_is_the_same_object(disk: Disk) -> None:
    view = view_of(disk)
    first = view.containers()
    assert view.containers() is first
    view.invalidate("a1")
    assert view.containers() is not first


def test_a_verb_invalidation_is_seen_by_the_next_read(disk: Disk) -> None:
    view = view_of(disk)
    view.containers()
    disk.items["a1"] = ("s1", pb.CONTAINER_EXITED)
    assert view.status("a1").status.state == pb.CONTAINER_RUNNING  # nobody said so yet
    view.invalidate("a1")
    assert view.status("a1").status.state == pb.CONTAINER_EXITED
    assert {c.id: c.state for c in view.containers()}["a1"] == pb.CONTAINER_EXITED


def test_a_new_container_is_listed_once_invalidated(disk: Disk) -> None:
    view = view_of(disk)
    view.containers()
    disk.items["c1"] = ("s1", pb.CONTAINER_CREATED)
    view.invalidate("c1")
    assert [c.id for c in view.containers()] == ["a1", "c1", "b1"]  # by sandbox, then ID


def test_forgotten_and_vanished_containers_are_not_found(disk: Disk) -> None:
    view = view_of(disk)
    view.containers()
    del disk.items["a1"]
    view.forget("a1")
    with pytest.raises(NotFound):
        view.status("a1")
    del disk.items["b1"]
    view.invalidate("b1")
    assert view.containers() == ()


def test_a_load_that_began_before_an_invalidation_does_not_overwrite_it(disk: Disk) -> None:
    view = view_of(disk)
    view.containers()
    gen = view.generation()
    stale = disk.load_all()  # read before the verb below
    disk.items["a1"] = ("s1", pb.CONTAINER_EXITED)
    view.invalidate("a1")
    view.apply(stale, gen=gen)
    assert view.status("a1").status.state == pb.CONTAINER_EXITED


def test_a_load_that_began_before_a_removal_does_not_resurrect(disk: Disk) -> None:
    view = view_of(disk)
    view.containers()
    gen = view.generation()
    stale = disk.load_all()
    del disk.items["a1"]
    view.forget("a1")
    view.apply(stale, gen=gen)
    assert [c.id for c in view.containers()] == ["b1"]


def test_a_sandbox_invalidation_covers_its_containers_only(disk: Disk) -> None:
    view = view_of(disk)
    view.containers()
    disk.items["a1"] = ("s1", pb.CONTAINER_EXITED)
    disk.items["b1"] = ("s2", pb.CONTAINER_EXITED)
    view.invalidate_sandbox("s1")
    states = {c.id: c.state for c in view.containers()}
    assert states == {"a1": pb.CONTAINER_EXITED, "b1": pb.CONTAINER_RUNNING}


def test_a_sandbox_load_drops_what_it_no_longer_holds(disk: Disk) -> None:
    view = view_of(disk)
    view.containers()
    gen = view.generation()
    del disk.items["a1"]
    view.apply([e for e in disk.load_all() if e.sandbox_id == "s1"], gen=gen, sandbox_id="s1")
    assert [c.id for c in view.containers()] == ["b1"]


def test_unasked_changes_show_after_the_next_scan(disk: Disk) -> None:
    view = view_of(disk)
    view.containers()
    disk.items["a1"] = ("s1", pb.CONTAINER_EXITED)  # the process exited on its own
    view.refresh()
    assert view.status("a1").status.state == pb.CONTAINER_EXITED


def test_a_stale_view_reloads_before_answering(disk: Disk) -> None:
    clock = Clock()
    view = view_of(disk, clock)
    view.containers()
    disk.items["a1"] = ("s1", pb.CONTAINER_EXITED)
    clock.now += 2.0
    assert view.status("a1").status.state == pb.CONTAINER_RUNNING  # within max_age
    clock.now += 2.0  # no scan for 4s > max_age_s
    assert view.status("a1").status.state == pb.CONTAINER_EXITED
    assert disk.full_loads == 2


def test_a_prefix_is_read_through_the_engine(disk: Disk) -> None:
    def load_one(cid: str) -> Entry:
        return disk.load_one("a1" if "a1".startswith(cid) else cid)
    view = ContainerView(load_all=disk.load_all, load_one=load_one, clock=Clock())
    view.containers()
    assert view.status("a").status.id == "a1"
    with pytest.raises(NotFound):
        view.status("zz")


def test_the_container_mirrors_the_status() -> None:
    status = pb.ContainerStatus(id="x", state=pb.CONTAINER_EXITED, created_at=5,
                                labels={"k": "v"}, annotations={"a": "b"},
                                image=pb.ImageSpec(image="busybox"), image_ref="sha256:1",
                                image_id="sha256:1",
                                metadata=pb.ContainerMetadata(name="n", attempt=2))
    c = entry(status, sandbox_id="s", pid=1).container
    assert c == pb.Container(id="x", pod_sandbox_id="s", state=pb.CONTAINER_EXITED,
                             created_at=5, labels={"k": "v"}, annotations={"a": "b"},
                             image=pb.ImageSpec(image="busybox"), image_ref="sha256:1",
                             image_id="sha256:1",
                             metadata=pb.ContainerMetadata(name="n", attempt=2))


def test_a_scan_that_began_before_a_create_does_not_drop_it(disk: Disk) -> None:
    view = view_of(disk)
    view.containers()
    gen = view.generation()
    stale = disk.load_all()  # the scan reads before the container exists
    disk.items["c1"] = ("s1", pb.CONTAINER_CREATED)
    view.invalidate("c1")
    view.apply([e for e in disk.load_all() if e.sandbox_id == "s1"],  # the create's event
               gen=view.generation(), sandbox_id="s1")
    view.apply(stale, gen=gen)  # the old scan lands last
    assert [c.id for c in view.containers()] == ["a1", "c1", "b1"]


def test_an_older_load_does_not_overwrite_a_newer_one(disk: Disk) -> None:
    view = view_of(disk)
    view.containers()
    gen = view.generation()
    stale = disk.load_all()
    disk.items["a1"] = ("s1", pb.CONTAINER_EXITED)
    view.invalidate("a1")
    view.status("a1")  # read through: the newer state is stored
    view.apply(stale, gen=gen)
    assert view.status("a1").status.state == pb.CONTAINER_EXITED
    assert disk.one_loads == 1


def test_a_scan_returning_the_same_entries_keeps_the_listing(disk: Disk) -> None:
    view = view_of(disk)
    entries = disk.load_all()
    view.apply(entries, gen=view.generation())
    view.refresh()  # Disk makes new objects: the listing is rebuilt
    first = view.containers()
    view.apply(list(view_entries(view)), gen=view.generation())
    assert view.containers() is first


def view_entries(view: ContainerView) -> list[Entry]:
    return [view.status(c.id) for c in view.containers()]
