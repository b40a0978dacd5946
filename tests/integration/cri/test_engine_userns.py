"""CRI user namespaces over the real engine, as critest's UserNamespaces specs and the
kubelet (hostUsers: false) drive them: a PodSandboxConfig with userns_options, translated
by the CRI layer, run by the engine with each driver; the container's /proc/self/uid_map;
NODE mode; the refusals; and the per-handler feature Status reports."""
from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri.api import runtime_pb2 as pb
from cri.server import engine_translate as tr
from engine.errors import InvalidArgument
from engine.runtime.api import Runtime
from tests.integration.runtime.fixtures import (
    DRIVERS,
    busybox_rootfs,
    need_driver,
    run_to_exit,
    searchable_runtime,
)

pytestmark = pytest.mark.integration
CRITEST_MAP = pb.IDMapping(container_id=0, host_id=1000, length=100000)


@pytest.fixture
def rt() -> Iterator[Runtime]:
    with searchable_runtime() as runtime:
        yield runtime


def _pod(userns: pb.UserNamespace) -> pb.PodSandboxConfig:
    uid = secrets.token_hex(8)
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=f"userns-{uid[:6]}", namespace="critest", uid=uid),
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(userns_options=userns))))


def _run(rt: Runtime, pod: pb.PodSandboxConfig, handler: str, tmp_path: Path) -> str:
    """RunPodSandbox, then a container with the pod's namespace options (as critest's
    runUserNamespaceContainer) running `cat /proc/self/uid_map`; its log."""
    need_driver(handler)
    sid = rt.run_sandbox(tr.sandbox_config(pod, runtime_handler=handler))
    container = pb.ContainerConfig()
    container.linux.security_context.namespace_options.CopyFrom(
        pod.linux.security_context.namespace_options)
    tr.check_container_user_namespace(container, rt.sandbox_status(sid).record.config)
    state, out = run_to_exit(rt, sid, busybox_rootfs(tmp_path / "rootfs"),
                             "cat /proc/self/uid_map")
    assert state.exit_code == 0, out
    return out + "\n"


@pytest.mark.parametrize("handler", DRIVERS)
def test_namespace_mode_pod(rt: Runtime, tmp_path: Path, handler: str) -> None:
    assert rt.user_namespaces(handler)
    pod = _pod(pb.UserNamespace(mode=pb.POD, uids=[CRITEST_MAP], gids=[CRITEST_MAP]))
    assert re.search(r"\s+0\s+1000\s+100000\n", _run(rt, pod, handler, tmp_path))


@pytest.mark.parametrize("handler", DRIVERS)
def test_namespace_mode_node(rt: Runtime, tmp_path: Path, handler: str) -> None:
    out = _run(rt, _pod(pb.UserNamespace(mode=pb.NODE)), handler, tmp_path)
    with open("/proc/self/uid_map") as f:
        for line in f.read().splitlines():
            container_id, host_id, length = line.split()
            assert re.search(rf"\s+{container_id}\s+{host_id}\s+{length}", out)


@pytest.mark.parametrize("userns", [
    pb.UserNamespace(mode=pb.POD, uids=[CRITEST_MAP, pb.IDMapping(host_id=2000, length=100000)],
                     gids=[CRITEST_MAP, pb.IDMapping(host_id=2000, length=100000)]),
    pb.UserNamespace(mode=pb.POD, uids=[pb.IDMapping(container_id=1, host_id=1000, length=1)],
                     gids=[pb.IDMapping(container_id=1, host_id=1000, length=1)]),
    pb.UserNamespace(mode=pb.CONTAINER),
    pb.UserNamespace(mode=pb.TARGET),
], ids=["more-than-one-mapping", "container-id-0-not-mapped", "container", "target"])
def test_refused_pods_leave_nothing(rt: Runtime, userns: pb.UserNamespace) -> None:
    with pytest.raises(InvalidArgument):  # the CRI layer answers INVALID_ARGUMENT
        rt.run_sandbox(tr.sandbox_config(_pod(userns), runtime_handler="native"))
    assert rt.list_sandboxes() == []


def test_no_feature_without_the_handlers_binary(rt: Runtime,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert not rt.user_namespaces("runc")
    assert rt.user_namespaces("native")
    assert not rt.user_namespaces("no-such-handler")
