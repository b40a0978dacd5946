"""User namespaces for hostUsers: false pods: the kubelet's ID range, the per-pod block
allocator (exhaustion, reuse, restart, concurrency), the handler check, and the CRI configs
and sandbox-creation failures the executor and worker make of it."""
from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cri.api import runtime_pb2 as pb
from kubelet_py.cri_client import CRIError
from kubelet_py.pods.cri_config import container_config, sandbox_config
from kubelet_py.pods.executor import Executor, SandboxError, StartError
from kubelet_py.pods.userns import UserNamespaces
from kubelet_py.pods.userns_range import (
    DEFAULT_FIRST_ID,
    DEFAULT_LENGTH,
    IDS_PER_POD,
    IdRange,
    UsernsError,
    kubelet_range,
)
from kubelet_py.pods.worker import PodWorker

from .fakes import ManualClock, run_async
from .test_cri_config import CTX, NO_ENV
from .test_worker import FakeReporter, FakeRuntime

DEFAULT = IdRange(DEFAULT_FIRST_ID, DEFAULT_LENGTH)
BLOCK = IDS_PER_POD


def status(*handlers: tuple[str, bool]) -> pb.StatusResponse:
    return pb.StatusResponse(runtime_handlers=[
        pb.RuntimeHandler(name=n, features=pb.RuntimeHandlerFeatures(user_namespaces=u))
        for n, u in handlers])


def userns(tmp_path: Path, *, id_range: IdRange = DEFAULT, max_pods: int = 110,
           answer: pb.StatusResponse | Exception | None = None) -> UserNamespaces:
    reply = answer if answer is not None else status(("", True), ("runc", True))

    async def get() -> pb.StatusResponse:
        if isinstance(reply, Exception):
            raise reply
        return reply

    return UserNamespaces(id_range=id_range, pods_dir=tmp_path / "pods", max_pods=max_pods,
                          status=get)


def pod(uid: str, host_users: bool | None = False, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox:1.36"}], **spec}
    if host_users is not None:
        s["hostUsers"] = host_users
    return {"metadata": {"name": f"p-{uid}", "namespace": "ns", "uid": uid}, "spec": s}


def first_of(opts: pb.UserNamespace) -> int:
    assert opts.mode == pb.POD
    assert len(opts.uids) == 1 and list(opts.uids) == list(opts.gids)
    m = opts.uids[0]
    assert (m.container_id, m.length) == (0, BLOCK)
    return int(m.host_id)


# -- the kubelet's range --------------------------------------------------------------------

def test_range_defaults_without_a_kubelet_user(tmp_path: Path) -> None:
    assert kubelet_range(lookup=lambda name: None, subuid=tmp_path / "x") == \
        IdRange(65536, 2**32 - 65536)


def test_range_from_subuid_and_subgid(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text("alice:100000:65536\nkubelet:524288:6553600\n")
    (tmp_path / "subgid").write_text("# comment\n999:524288:6553600\nalice:100000:65536\n")
    got = kubelet_range(lookup=lambda name: 999, subuid=tmp_path / "subuid",
                        subgid=tmp_path / "subgid")
    assert got == IdRange(524288, 6553600)


def test_range_errors(tmp_path: Path) -> None:
    uid, gid = tmp_path / "subuid", tmp_path / "subgid"
    uid.write_text("kubelet:524288:655360\n")
    gid.write_text("kubelet:589824:655360\n")
    with pytest.raises(UsernsError, match="mismatched subuids and subgids"):
        kubelet_range(lookup=lambda name: 999, subuid=uid, subgid=gid)
    with pytest.raises(UsernsError, match=r"exactly one range in .*none, found 0"):
        kubelet_range(lookup=lambda name: 999, subuid=tmp_path / "none", subgid=gid)
    uid.write_text("kubelet:lots:655360\n")
    with pytest.raises(UsernsError, match=r"subuid:1: .* is not name:first:count"):
        kubelet_range(lookup=lambda name: 999, subuid=uid, subgid=gid)


@pytest.mark.parametrize(("rng", "max_pods", "message"), [
    (IdRange(65536 + 1, 65536 * 4), 1, "65537 is not a multiple of 65536"),
    (IdRange(0, 65536 * 4), 1, "must be greater or equal to 65536"),
    (IdRange(65536, 65536 * 4 + 5), 1, "length 262149 is not a multiple of 65536"),
    (IdRange(65536, 65536 * 4), 5, "not enough to support 5 pods"),
])
def test_bad_ranges_are_refused(tmp_path: Path, rng: IdRange, max_pods: int,
                                message: str) -> None:
    with pytest.raises(UsernsError, match=message):
        userns(tmp_path, id_range=rng, max_pods=max_pods)


# -- allocation -----------------------------------------------------------------------------

@run_async
async def test_blocks_are_unique_stable_and_persisted(tmp_path: Path) -> None:
    un = userns(tmp_path)
    a = first_of(await un.for_sandbox(pod("a"), ""))
    b = first_of(await un.for_sandbox(pod("b"), "runc"))
    assert (a, b) == (65536, 131072)
    assert first_of(await un.for_sandbox(pod("a"), "")) == a  # a recreated sandbox
    assert first_of(un.for_container(pod("a"))) == a
    doc = json.loads((tmp_path / "pods" / "a" / "userns").read_text())
    assert doc == {"uidMappings": [{"hostId": a, "containerId": 0, "length": BLOCK}],
                   "gidMappings": [{"hostId": a, "containerId": 0, "length": BLOCK}]}


@run_async
async def test_pods_without_host_users_false_get_the_node_mode(tmp_path: Path) -> None:
    un = userns(tmp_path, answer=status(("", False)))  # the handler need not support it
    for p in (pod("x", None), pod("y", True)):
        assert await un.for_sandbox(p, "") == pb.UserNamespace(mode=pb.NODE)
        assert un.for_container(p) == pb.UserNamespace(mode=pb.NODE)
    assert un.allocations == {}
    assert not (tmp_path / "pods").exists()


@run_async
async def test_exhaustion_is_a_precise_error(tmp_path: Path) -> None:
    un = userns(tmp_path, id_range=IdRange(BLOCK * 3, BLOCK * 2), max_pods=2)
    assert [first_of(await un.for_sandbox(pod(u), "")) for u in "ab"] == [BLOCK * 3, BLOCK * 4]
    with pytest.raises(UsernsError) as exc:
        await un.for_sandbox(pod("c"), "")
    assert str(exc.value) == (
        "create user namespace: could not find an empty slot to allocate a user namespace: "
        "all 2 blocks of 65536 IDs from 196608 are in use")
    assert not (tmp_path / "pods" / "c").exists() and "c" not in un.allocations


@run_async
async def test_release_frees_the_block_for_reuse(tmp_path: Path) -> None:
    un = userns(tmp_path, id_range=IdRange(BLOCK, BLOCK * 2), max_pods=2)
    a = first_of(await un.for_sandbox(pod("a"), ""))
    await un.for_sandbox(pod("b"), "")
    un.release("a")
    assert not (tmp_path / "pods" / "a" / "userns").exists()
    un.release("a")  # twice, or for a pod that never had one: nothing happens
    un.release("never")
    assert first_of(await un.for_sandbox(pod("c"), "")) == a
    with pytest.raises(UsernsError, match="pod a has no user namespace allocated"):
        un.for_container(pod("a"))


@run_async
async def test_restart_reconstructs_from_the_state_files(tmp_path: Path) -> None:
    un = userns(tmp_path)
    firsts = {u: first_of(await un.for_sandbox(pod(u), "")) for u in "abc"}
    un.release("b")
    again = userns(tmp_path)  # a new kubelet process on the same root dir
    assert again.allocations == {"a": firsts["a"], "c": firsts["c"]}
    assert first_of(again.for_container(pod("c"))) == firsts["c"]
    d = first_of(await again.for_sandbox(pod("d"), ""))
    e = first_of(await again.for_sandbox(pod("e"), ""))
    assert d == firsts["b"] and e not in firsts.values()


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "Expecting property name"),
    ('{"uidMappings": [], "gidMappings": []}', "exactly one UID mapping"),
    ('{"uidMappings": [{"hostId": 65536, "containerId": 0, "length": 65536}], '
     '"gidMappings": [{"hostId": 131072, "containerId": 0, "length": 65536}]}',
     "GID and UID mappings should be identical"),
    ('{"uidMappings": [{"hostId": 65536, "containerId": 1, "length": 65536}], '
     '"gidMappings": [{"hostId": 65536, "containerId": 1, "length": 65536}]}',
     "UID 0 must be mapped"),
    ('{"uidMappings": [{"hostId": 65536, "containerId": 0, "length": 1000}], '
     '"gidMappings": [{"hostId": 65536, "containerId": 0, "length": 1000}]}',
     "wrong user namespace length 1000"),
    ('{"uidMappings": [{"hostId": 0, "containerId": 0, "length": 65536}], '
     '"gidMappings": [{"hostId": 0, "containerId": 0, "length": 65536}]}',
     "id 0 is out of range"),
])
def test_unreadable_state_stops_the_start(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "pods" / "u9").mkdir(parents=True)
    (tmp_path / "pods" / "u9" / "userns").write_text(content)
    with pytest.raises(UsernsError, match=f"user namespace of pod u9: .*userns: .*{message}"):
        userns(tmp_path)


def test_two_pods_claiming_one_block_stop_the_start(tmp_path: Path) -> None:
    doc = json.dumps({"uidMappings": [{"hostId": BLOCK, "containerId": 0, "length": BLOCK}],
                      "gidMappings": [{"hostId": BLOCK, "containerId": 0, "length": BLOCK}]})
    for uid in ("p1", "p2"):
        (tmp_path / "pods" / uid).mkdir(parents=True)
        (tmp_path / "pods" / uid / "userns").write_text(doc)
    with pytest.raises(UsernsError, match="range picked for pod p2 already taken"):
        userns(tmp_path)


@run_async
async def test_a_state_file_that_cannot_be_written_leaks_no_block(tmp_path: Path) -> None:
    un = userns(tmp_path)
    (tmp_path / "pods").write_text("not a directory")
    with pytest.raises(UsernsError, match=r"create user namespace: .*Not a directory"):
        await un.for_sandbox(pod("a"), "")
    assert un.allocations == {}


@run_async
async def test_prune_releases_pods_that_are_gone(tmp_path: Path) -> None:
    un = userns(tmp_path)
    for u in "abc":
        await un.for_sandbox(pod(u), "")
    assert sorted(un.prune({"b", "zzz"})) == ["a", "c"]
    assert list(un.allocations) == ["b"]
    assert sorted(p.name for p in (tmp_path / "pods").glob("*/userns")) == ["userns"]


def test_concurrent_allocations_never_share_a_block(tmp_path: Path) -> None:
    un = userns(tmp_path, id_range=IdRange(BLOCK, BLOCK * 64), max_pods=64)
    barrier = threading.Barrier(16)

    def one(i: int) -> int:
        if i < 16:
            barrier.wait()
        return first_of(asyncio.run(un.for_sandbox(pod(f"t{i}"), "")))

    with ThreadPoolExecutor(16) as pool:
        firsts = list(pool.map(one, range(64)))
    assert sorted(firsts) == [BLOCK * n for n in range(1, 65)]
    with pytest.raises(UsernsError, match="all 64 blocks"):
        asyncio.run(un.for_sandbox(pod("one-more"), ""))


@run_async
async def test_concurrent_pod_workers_never_share_a_block(tmp_path: Path) -> None:
    un = userns(tmp_path)
    got = await asyncio.gather(*(un.for_sandbox(pod(f"w{i}"), "") for i in range(40)))
    assert len({first_of(o) for o in got}) == 40


# -- the runtime handler --------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "handler", "message"), [
    (status(("", False)), "",
     "can't set `spec.hostUsers: false`, runtime does not support user namespaces"),
    (status(("", True), ("kata", False)), "kata",
     "can't set `spec.hostUsers: false`, RuntimeClass handler \"kata\" does not support user "
     "namespaces"),
    (status(("", True)), "gvisor",
     "can't set `spec.hostUsers: false`, RuntimeClass handler \"gvisor\" does not support user "
     "namespaces: the handler \"gvisor\" is not known"),
    (status(), "",
     "can't set `spec.hostUsers: false`, runtime does not support user namespaces: runtime "
     "handlers are not set"),
])
def test_handler_without_user_namespaces(tmp_path: Path, answer: pb.StatusResponse,
                                         handler: str, message: str) -> None:
    un = userns(tmp_path, answer=answer)
    with pytest.raises(UsernsError) as exc:
        asyncio.run(un.for_sandbox(pod("a"), handler))
    assert str(exc.value) == message
    assert un.allocations == {}


def test_status_failure_is_part_of_the_message(tmp_path: Path) -> None:
    import grpc

    un = userns(tmp_path, answer=CRIError("Status", grpc.StatusCode.UNAVAILABLE, "down"))
    with pytest.raises(UsernsError, match=r"runtime does not support user namespaces: .*down"):
        asyncio.run(un.for_sandbox(pod("a"), ""))


@pytest.mark.parametrize("field", ["hostNetwork", "hostPID", "hostIPC"])
def test_host_namespaces_are_forbidden_with_own_userns(tmp_path: Path, field: str) -> None:
    un = userns(tmp_path)
    with pytest.raises(UsernsError, match=r"Forbidden: when `pod\.Spec\.HostUsers` is false"):
        asyncio.run(un.for_sandbox(pod("a", **{field: True}), ""))


# -- configs, executor, worker ----------------------------------------------------------------

@run_async
async def test_sandbox_and_every_container_carry_the_same_options(tmp_path: Path) -> None:
    un = userns(tmp_path)
    p = pod("a", containers=[{"name": "one", "image": "i"}, {"name": "two", "image": "i"}])
    opts = await un.for_sandbox(p, "")
    sb = sandbox_config(CTX, p, attempt=0, userns=opts)
    assert sb.linux.security_context.namespace_options.userns_options == opts
    for spec in p["spec"]["containers"]:
        cfg = container_config(CTX, p, spec, attempt=0, volumes={}, image_ref="",
                               environment=NO_ENV, userns=un.for_container(p))
        assert cfg.linux.security_context.namespace_options.userns_options == opts
    assert first_of(opts) == 65536


class FakeCRI:
    """What Executor.create_sandbox / start_container touch before the runtime runs."""

    def __init__(self, answer: pb.StatusResponse) -> None:
        self.configs: list[pb.PodSandboxConfig] = []
        self.answer = answer
        cri = self

        class Sandboxes:
            async def run(self, config: pb.PodSandboxConfig, *, runtime_handler: str) -> str:
                cri.configs.append(config)
                return f"sb{len(cri.configs)}"

        class Info:
            async def status(self) -> pb.StatusResponse:
                return cri.answer

        self.sandboxes, self.info = Sandboxes(), Info()


def executor(cri: FakeCRI, un: UserNamespaces) -> Executor:
    return Executor(cri, ctx=CTX, volumes=object(), auth=object(),  # type: ignore[arg-type]
                    objects=None, services=object(), userns=un)  # type: ignore[arg-type]


@run_async
async def test_executor_creates_the_sandbox_with_the_block(tmp_path: Path) -> None:
    cri = FakeCRI(status(("", True)))
    un = UserNamespaces(id_range=DEFAULT, pods_dir=tmp_path, max_pods=110,
                        status=cri.info.status)
    ex = executor(cri, un)
    await ex.create_sandbox(pod("a"), 0)
    await ex.create_sandbox(pod("b", None), 0)
    a, b = (c.linux.security_context.namespace_options.userns_options for c in cri.configs)
    assert first_of(a) == 65536 and b == pb.UserNamespace(mode=pb.NODE)
    cri.answer = status(("", False))
    with pytest.raises(SandboxError) as exc:
        await ex.create_sandbox(pod("c"), 0)
    assert str(exc.value) == ("Failed to create pod sandbox: can't set `spec.hostUsers: "
                              "false`, runtime does not support user namespaces")
    assert len(cri.configs) == 2  # never a silent host-userns pod


@run_async
async def test_container_without_an_allocation_is_a_config_error(tmp_path: Path) -> None:
    cri = FakeCRI(status(("", True)))
    ex = executor(cri, userns(tmp_path))
    with pytest.raises(StartError) as exc:
        await ex.start_container(pod("a"), {"name": "c", "image": "i"}, sandbox_id="sb",
                                 sandbox_attempt=0, attempt=0, pod_ips=())
    assert exc.value.reason == "CreateContainerConfigError"
    assert "pod a has no user namespace allocated" in exc.value.message


@run_async
async def test_worker_reports_exhaustion_as_failed_sandbox_creation(tmp_path: Path) -> None:
    clock = ManualClock()
    cri = FakeCRI(status(("", True)))
    un = UserNamespaces(id_range=IdRange(BLOCK, BLOCK), max_pods=1, pods_dir=tmp_path,
                        status=cri.info.status)
    await un.for_sandbox(pod("other"), "")
    rt, rep = FakeRuntime(clock), FakeReporter()

    async def handler(p: Any) -> str:
        return ""

    worker = PodWorker("u1", executor=executor(cri, un), view=rt.view, reporter=rep,
                       clock=clock, runtime_name=lambda: "fake", host_ips=("192.0.2.1",),
                       runtime_handler=handler, cleanup=lambda uid: None)
    p = pod("u1")
    await worker.sync(p)
    assert rep.events == ["Warning/FailedCreatePodSandBox"]
    assert rep.messages == [
        "Failed to create pod sandbox: create user namespace: could not find an empty slot "
        "to allocate a user namespace: all 1 blocks of 65536 IDs from 65536 are in use"]
    waiting = rep.statuses[-1]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ContainerCreating" and "empty slot" in waiting["message"]
    assert cri.configs == []


def test_orphan_reconciliation_frees_blocks_of_pods_that_are_gone(tmp_path: Path) -> None:
    """At start: an orphaned sandbox is removed and its block freed (the cleanup hook); a
    block whose pod is neither known nor in the runtime is pruned; a known pod keeps its."""
    from kubelet_py.pods.manager import PodManager

    from .test_admission import NODE, _Worker

    un = userns(tmp_path)
    for u in ("kept", "orphan", "stale"):
        asyncio.run(un.for_sandbox(pod(u), ""))
    boxes = [pb.PodSandbox(id=f"sb-{u}", labels={"io.kubernetes.pod.uid": u})
             for u in ("kept", "orphan")]

    class Sandboxes:
        async def list(self, *, labels: dict[str, str] | None = None) -> list[pb.PodSandbox]:
            return [b for b in boxes if not labels or
                    b.labels["io.kubernetes.pod.uid"] == labels["io.kubernetes.pod.uid"]]

        async def status(self, sandbox_id: str) -> pb.PodSandboxStatus:
            return pb.PodSandboxStatus(id=sandbox_id, created_at=1)

    class Containers:
        async def list(self, *, labels: dict[str, str] | None = None) -> list[pb.Container]:
            return []

    class Cri:
        sandboxes = Sandboxes()
        containers = Containers()

    class Exec:
        async def kill_pod(self, runtime: Any, *, grace: int) -> None:
            pass

        async def remove_pod(self, runtime: Any) -> None:
            pass

    manager = PodManager(None, Cri(), node_name="n1",  # type: ignore[arg-type]
                         executor=Exec(), clock=ManualClock(),  # type: ignore[arg-type]
                         host_ips=(), cleanup=un.release, allocatable=NODE, userns=un)
    manager.workers = {"kept": _Worker(pod("kept"))}  # type: ignore[dict-item]
    assert asyncio.run(manager.reconcile_orphans()) == 1
    assert list(un.allocations) == ["kept"]
    assert [p.parent.name for p in (tmp_path / "pods").glob("*/userns")] == ["kept"]
