"""What a container of a pod with its own user namespace is given: the user namespace
joined first, the pod's maps, and its user checked against them."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.execdriver.spec import IDMapping, InitSpec
from engine.runtime import build
from engine.runtime.idmapped import unsearchable_parent
from engine.runtime.sandbox import check_user_namespace
from engine.runtime.spec import ContainerConfig, ImageConfig, SandboxConfig, SecurityConfig

UIDS = (IDMapping(0, 100000, 65536),)
GIDS = (IDMapping(0, 200000, 1000),)


def _sandbox(tmp_path: Path, **kw: object) -> build.SandboxFacts:
    config = SandboxConfig(name="p", namespace="n", uid="u", **kw)  # type: ignore[arg-type]
    return build.SandboxFacts(id="sid", dir=str(tmp_path / "sb"), config=config,
                              cgroup_path="kp/pod")


def _spec(tmp_path: Path, security: SecurityConfig, **kw: object) -> InitSpec:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return build.init_spec("cid", sandbox=_sandbox(tmp_path, **kw),
                           config=ContainerConfig(name="c", command=("true",),
                                                  security=security),
                           image=ImageConfig(), rootfs=str(root), image_volumes={})


def test_the_user_namespace_comes_first_with_the_pods_maps(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SecurityConfig(), uid_mappings=UIDS, gid_mappings=GIDS)
    assert spec.namespaces[0].type == "user"
    assert spec.namespaces[0].path == str(tmp_path / "sb" / "ns" / "user")
    assert (spec.uid_mappings, spec.gid_mappings) == (UIDS, GIDS)
    assert [n.type for n in spec.namespaces[1:]] == ["mnt", "pid", "net", "ipc", "uts"]


def test_no_user_namespace_in_node_mode(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SecurityConfig())
    assert spec.namespace("user") is None and spec.uid_mappings == ()


@pytest.mark.parametrize("security, needle", [
    (SecurityConfig(run_as_user=65536), "uid 65536 is not mapped"),
    (SecurityConfig(run_as_user=1, run_as_group=1000), "gid 1000 is not mapped"),
    (SecurityConfig(run_as_user=1, supplemental_groups=(5, 2000)), "gid 2000 is not mapped"),
])
def test_ids_outside_the_maps_are_refused(tmp_path: Path, security: SecurityConfig,
                                          needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        _spec(tmp_path, security, uid_mappings=UIDS, gid_mappings=GIDS)


def test_ids_inside_the_maps_pass(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SecurityConfig(run_as_user=65535, run_as_group=999),
                 uid_mappings=UIDS, gid_mappings=GIDS)
    assert (spec.user.uid, spec.user.gid) == (65535, 999)


@pytest.mark.parametrize("kw, needle", [
    ({"host_network": True, "host_ipc": True}, "host's network, IPC namespace"),
    ({"host_pid": True}, "host's PID namespace"),
    ({"privileged": True}, "cannot be privileged"),
    ({"uid_mappings": UIDS * 2}, "exactly one uid"),
])
def test_sandbox_checks(kw: dict[str, object], needle: str) -> None:
    base: dict[str, object] = {"uid_mappings": UIDS, "gid_mappings": GIDS}
    base.update(kw)
    config = SandboxConfig(name="p", namespace="n", uid="u", **base)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=needle):
        check_user_namespace(config)



def test_unsearchable_parent_names_the_first_closed_directory(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    (closed / "run").mkdir(parents=True)
    closed.chmod(0o700)
    assert unsearchable_parent(closed / "run") == \
        f"{closed} (mode 700) is not searchable by the root of a pod user namespace, " \
        "an unprivileged host uid"
    closed.chmod(0o711)
    above = unsearchable_parent(closed / "run")  # pytest's own 0700 dirs may remain above
    assert str(closed) not in above
    assert above == unsearchable_parent(tmp_path / "x")
