"""CRI user namespace options (NamespaceOption.userns_options) to engine specs, and the
per-handler feature Status reports."""
from __future__ import annotations

import pytest

from cri.api import runtime_pb2 as pb
from cri.server import engine_translate as tr
from cri.server.engine_runtime import sandbox_status
from cri.server.ports import Ports
from cri.server.runtime_info import RuntimeInfo
from engine.errors import InvalidArgument
from engine.execdriver.spec import IDMapping
from engine.runtime.api import SandboxInfo
from engine.runtime.status import SandboxStatus
from engine.runtime.store import SandboxRecord

MAP = pb.IDMapping(container_id=0, host_id=1000, length=100000)


def _pod(userns: pb.UserNamespace | None) -> pb.PodSandboxConfig:
    ns = pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD)
    if userns is not None:
        ns.userns_options.CopyFrom(userns)
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="p", namespace="n", uid="u"),
        linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=ns)))


def test_pod_mode_carries_the_maps() -> None:
    cfg = tr.sandbox_config(_pod(pb.UserNamespace(mode=pb.POD, uids=[MAP], gids=[MAP])),
                            runtime_handler="")
    assert cfg.uid_mappings == cfg.gid_mappings == (IDMapping(0, 1000, 100000),)
    assert cfg.user_namespace


@pytest.mark.parametrize("userns", [None, pb.UserNamespace(mode=pb.NODE)])
def test_unset_and_node_mode_are_the_hosts(userns: pb.UserNamespace | None) -> None:
    cfg = tr.sandbox_config(_pod(userns), runtime_handler="")
    assert (cfg.uid_mappings, cfg.gid_mappings, cfg.user_namespace) == ((), (), False)


def test_maps_are_passed_as_given_for_the_engine_to_judge() -> None:
    two = [MAP, pb.IDMapping(container_id=0, host_id=2000, length=100000)]
    cfg = tr.sandbox_config(_pod(pb.UserNamespace(mode=pb.POD, uids=two, gids=two)),
                            runtime_handler="")
    assert len(cfg.uid_mappings) == 2  # engine.runtime.sandbox refuses it (one range only)


@pytest.mark.parametrize("userns, needle", [
    (pb.UserNamespace(mode=pb.CONTAINER), "mode CONTAINER is not supported"),
    (pb.UserNamespace(mode=pb.TARGET), "mode TARGET is not supported"),
    (pb.UserNamespace(mode=pb.POD), "needs uid and gid mappings"),
    (pb.UserNamespace(mode=pb.POD, uids=[MAP]), "needs uid and gid mappings"),
    (pb.UserNamespace(mode=pb.NODE, uids=[MAP], gids=[MAP]), "NODE takes no"),
])
def test_invalid_options_are_refused(userns: pb.UserNamespace, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        tr.sandbox_config(_pod(userns), runtime_handler="")


def test_a_container_must_name_its_pods_user_namespace_or_none() -> None:
    pod = tr.sandbox_config(_pod(pb.UserNamespace(mode=pb.POD, uids=[MAP], gids=[MAP])),
                            runtime_handler="")
    container = pb.ContainerConfig()
    tr.check_container_user_namespace(container, pod)  # unset: the pod's
    opts = container.linux.security_context.namespace_options.userns_options
    opts.CopyFrom(pb.UserNamespace(mode=pb.POD, uids=[MAP], gids=[MAP]))
    tr.check_container_user_namespace(container, pod)
    opts.CopyFrom(pb.UserNamespace(mode=pb.NODE))
    with pytest.raises(InvalidArgument, match="differ from its pod's"):
        tr.check_container_user_namespace(container, pod)


class _Containers:
    """The feature methods of a ContainerPort: user namespaces for "runc" only."""

    def recursive_read_only_mounts(self) -> bool:
        return True

    def supplemental_groups_policy(self) -> bool:
        return True

    def user_namespaces(self, handler: str) -> bool:
        return handler == "runc"


def test_status_reports_user_namespaces_per_handler() -> None:
    info = RuntimeInfo(Ports(containers=_Containers(),  # type: ignore[arg-type]
                             runtime_handlers=("runc", "crun")))
    response = info.Status(pb.StatusRequest(), None)  # type: ignore[arg-type]
    assert {h.name: h.features.user_namespaces for h in response.runtime_handlers} == {
        "": False, "runc": True, "crun": False}
    assert all(h.features.recursive_read_only_mounts for h in response.runtime_handlers)


@pytest.mark.parametrize("userns", [None, pb.UserNamespace(mode=pb.POD, uids=[MAP], gids=[MAP])])
def test_sandbox_status_reports_the_pods_user_namespace(userns: pb.UserNamespace | None) -> None:
    cfg = tr.sandbox_config(_pod(userns), runtime_handler="")
    rec = SandboxRecord(id="s" * 64, config=cfg, created_at=1, cgroup_path="", driver="native")
    status = sandbox_status(SandboxInfo(record=rec, status=SandboxStatus.READY, netns_path="",
                                        monitor_alive=True))
    got = status.linux.namespaces.options.userns_options
    if userns is None:
        assert got == pb.UserNamespace(mode=pb.NODE)
    else:
        assert got == userns
