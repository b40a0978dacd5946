"""Find a container or pod sandbox from an ID, a unique ID prefix or a name."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from cri.api import runtime_pb2 as pb
from cri.ctl.context import Ctx
from cri.ctl.errors import CtlError

T = TypeVar("T")


def pick(items: Sequence[T], key: str, *, ident: Callable[[T], str],
         names: Callable[[T], Sequence[str]], what: str) -> T | None:
    """The one item whose ID is `key`, starts with it, or which is named `key`."""
    if not key:
        raise CtlError(f"an empty {what} ID is not valid")
    stages: list[Callable[[T], bool]] = [lambda i: ident(i) == key,
                                         lambda i: ident(i).startswith(key),
                                         lambda i: key in names(i)]
    for stage in stages:
        found = [i for i in items if stage(i)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CtlError(f"{what} {key!r} is ambiguous: "
                           f"{', '.join(ident(i)[:12] for i in found)}")
    return None


def find_container(ctx: Ctx, key: str) -> pb.Container | None:
    resp = ctx.conn.call(ctx.conn.runtime.ListContainers, pb.ListContainersRequest())
    return pick(list(resp.containers), key, ident=lambda c: str(c.id),
                names=lambda c: [c.metadata.name], what="container")


def find_sandbox(ctx: Ctx, key: str) -> pb.PodSandbox | None:
    resp = ctx.conn.call(ctx.conn.runtime.ListPodSandbox, pb.ListPodSandboxRequest())
    return pick(list(resp.items), key, ident=lambda s: str(s.id),
                names=lambda s: [s.metadata.name], what="pod sandbox")


def container(ctx: Ctx, key: str) -> pb.Container:
    found = find_container(ctx, key)
    if found is None:
        raise CtlError(f"NOT_FOUND: no such container {key!r}")
    return found
