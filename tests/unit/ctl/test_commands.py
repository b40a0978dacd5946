"""enginectl's container commands against the CRI server over fake ports."""
from __future__ import annotations

import json
from typing import cast

from cri.api import runtime_pb2 as pb
from cri.ctl.cmd_rm import RUN_LABEL
from tests.unit.cri.fakes import FakeContainers, FakeImages, FakeSandboxes
from tests.unit.ctl.conftest import Served


def fakes(served: Served) -> tuple[FakeSandboxes, FakeContainers]:
    return (cast(FakeSandboxes, served.ports.sandboxes),
            cast(FakeContainers, served.ports.containers))


def run_detached(served: Served, *args: str) -> str:
    r = served.ctl("run", "-d", "--name", "web", *args)
    assert r.code == 0, r.err
    return r.out.strip()


def test_run_detached_makes_a_one_container_pod(served: Served) -> None:
    r = served.ctl("run", "-d", "--name", "web", "-e", "A=1", "busybox:1", "sleep", "9")
    assert r.code == 0, r.err
    assert "Unable to find image 'busybox:1' locally" in r.err
    cid = r.out.strip()
    sandboxes, containers = fakes(served)
    [pod] = sandboxes.items.values()
    assert pod.metadata.name == "web" and pod.metadata.namespace == "default"
    assert pod.labels[RUN_LABEL] == "true"
    assert containers.items[cid].state == pb.CONTAINER_RUNNING
    assert containers.items[cid].pod_sandbox_id == pod.id
    assert served.engine.auths == [None]  # the missing image was pulled first


def test_run_pulls_only_a_missing_image(served: Served) -> None:
    images = cast(FakeImages, served.ports.images)
    images.pull_image("busybox:1", auth=None)
    run_detached(served, "busybox:1")
    assert served.engine.auths == []


def test_run_rejects_a_bad_name_before_doing_anything(served: Served) -> None:
    r = served.ctl("run", "--name", "Bad_Name", "busybox:1")
    assert r.code == 125
    assert "must be a DNS label" in r.err
    assert fakes(served)[0].items == {}


def test_run_rejects_bad_env(served: Served) -> None:
    r = served.ctl("run", "-e", "novalue", "busybox:1")
    assert (r.code, r.err) == (125, "enginectl: -e needs KEY=VALUE, not 'novalue'\n")


def test_ps_lists_running_and_all(served: Served) -> None:
    cid = run_detached(served, "busybox:1")
    r = served.ctl("ps")
    assert r.code == 0, r.err
    header, row = r.out.splitlines()
    assert header.split()[:3] == ["CONTAINER", "ID", "IMAGE"]
    assert row.split()[0] == cid[:13] and row.split()[-1] == "web"
    served.ctl("stop", cid)
    assert len(served.ctl("ps").out.splitlines()) == 1
    assert served.ctl("ps", "-a", "-q").out == f"{cid}\n"
    assert json.loads(served.ctl("ps", "-a", "-o", "json").out)[0]["id"] == cid


def test_stop_passes_the_timeout_and_accepts_prefixes_and_names(served: Served) -> None:
    cid = run_detached(served, "busybox:1")
    r = served.ctl("stop", "-t", "3", cid[:8])
    assert (r.code, r.out) == (0, f"{cid[:8]}\n")
    assert fakes(served)[1].stopped == [(cid, 3)]
    assert served.ctl("stop", "-t", "-1", "web").code == 125
    missing = served.ctl("stop", "nothing")
    assert (missing.code, missing.err) == (125,
                                           "enginectl: NOT_FOUND: no such container 'nothing'\n")


def test_rm_refuses_a_running_container_without_force(served: Served) -> None:
    cid = run_detached(served, "busybox:1")
    r = served.ctl("rm", "web")
    assert r.code == 125 and "is running: stop it first or use rm -f" in r.err
    assert cid in fakes(served)[1].items
    r = served.ctl("rm", "-f", "web")
    assert r.code == 0, r.err
    sandboxes, containers = fakes(served)
    assert containers.items == {}
    assert containers.stopped == [(cid, 0)]
    assert sandboxes.items == {}  # the pod `run` made went with its container


def test_exec_sync_returns_the_commands_exit_code(served: Served) -> None:
    run_detached(served, "busybox:1")
    r = served.ctl("exec", "web", "echo", "-n", "hi")
    assert (r.code, r.out) == (3, "echo -n hi")  # the fake echoes the command, exits 3
    assert served.ctl("exec", "web").code == 125


def test_logs_of_a_container_without_a_log_file_is_an_error(served: Served) -> None:
    run_detached(served, "busybox:1")
    r = served.ctl("logs", "web")
    assert r.code == 125
    assert "has no log file" in r.err


def test_inspect_a_container_and_a_sandbox(served: Served) -> None:
    cid = run_detached(served, "busybox:1")
    served.ctl("stop", cid)
    [doc] = json.loads(served.ctl("inspect", cid).out)
    assert doc["kind"] == "container" and doc["id"] == cid
    pod_id = next(iter(fakes(served)[0].items))
    [doc] = json.loads(served.ctl("inspect", pod_id[:10]).out)
    assert (doc["kind"], doc["id"], doc["info"]) == ("sandbox", pod_id, {"pid": 42})


def test_images_table_and_json(served: Served) -> None:
    images = cast(FakeImages, served.ports.images)
    images.pull_image("r/busybox:1", auth=None)
    r = served.ctl("images")
    assert r.code == 0, r.err
    assert r.out.splitlines()[1].split() == ["r/busybox", "1", "0" * 12, "1.23kB"]
    assert json.loads(served.ctl("images", "-o", "json").out)[0]["repoTags"] == ["r/busybox:1"]
