"""ListContainers: filters read once, the unfiltered answer reused while nothing changed."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest

from cri.api import runtime_pb2 as pb
from cri.server.containers import Containers, matches, selector
from cri.server.ports import ContainerPort

ITEMS = (
    pb.Container(id="aaa1", pod_sandbox_id="s1", state=pb.CONTAINER_RUNNING,
                 labels={"app": "web", "tier": "fe"}),
    pb.Container(id="aab2", pod_sandbox_id="s1", state=pb.CONTAINER_EXITED,
                 labels={"app": "web"}),
    pb.Container(id="bbb3", pod_sandbox_id="s2", state=pb.CONTAINER_RUNNING, labels={}),
)


class Listing:
    def __init__(self, items: Sequence[pb.Container]) -> None:
        self.items = items

    def list_containers(self) -> Sequence[pb.Container]:
        return self.items


def servicer(listing: Listing) -> Containers:
    return Containers(cast(ContainerPort, listing))


def ids(response: pb.ListContainersResponse) -> list[str]:
    return [c.id for c in response.containers]


@pytest.mark.parametrize(("flt", "want"), [
    (pb.ContainerFilter(), ["aaa1", "aab2", "bbb3"]),
    (pb.ContainerFilter(id="aa"), ["aaa1", "aab2"]),
    (pb.ContainerFilter(pod_sandbox_id="s2"), ["bbb3"]),
    (pb.ContainerFilter(state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)),
     ["aaa1", "bbb3"]),
    (pb.ContainerFilter(state=pb.ContainerStateValue(state=pb.CONTAINER_CREATED)), []),
    (pb.ContainerFilter(label_selector={"app": "web", "tier": "fe"}), ["aaa1"]),
    (pb.ContainerFilter(id="aa", label_selector={"app": "web"},
                        state=pb.ContainerStateValue(state=pb.CONTAINER_EXITED)), ["aab2"]),
])
def test_filters(flt: pb.ContainerFilter, want: list[str]) -> None:
    response = servicer(Listing(ITEMS)).ListContainers(
        pb.ListContainersRequest(filter=flt), cast(Any, None))
    assert ids(response) == want
    assert [c.id for c in ITEMS if matches(c, flt)] == want


def test_an_empty_filter_selects_everything() -> None:
    assert selector(pb.ContainerFilter()) is None
    assert selector(pb.ContainerFilter(id="a")) is not None


def test_the_unfiltered_answer_is_reused_while_the_listing_is_the_same() -> None:
    listing = Listing(ITEMS)
    svc = servicer(listing)
    first = svc.ListContainers(pb.ListContainersRequest(), cast(Any, None))
    assert svc.ListContainers(pb.ListContainersRequest(), cast(Any, None)) is first
    listing.items = ITEMS[:1]  # a new listing object: a new answer
    second = svc.ListContainers(pb.ListContainersRequest(), cast(Any, None))
    assert ids(second) == ["aaa1"] and ids(first) == ["aaa1", "aab2", "bbb3"]


def test_an_equal_but_new_listing_is_not_trusted() -> None:
    listing = Listing(list(ITEMS))
    svc = servicer(listing)
    first = svc.ListContainers(pb.ListContainersRequest(), cast(Any, None))
    listing.items = list(ITEMS)
    assert svc.ListContainers(pb.ListContainersRequest(), cast(Any, None)) is not first
