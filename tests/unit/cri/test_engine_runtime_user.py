"""ContainerStatus.user: the identity the engine started the container's process with."""
from __future__ import annotations

from cri.api import runtime_pb2 as pb
from cri.server.engine_runtime import user_of
from engine.execdriver.spec import User


def test_user_of_reports_uid_gid_and_every_supplementary_group() -> None:
    got = user_of(User(uid=1000, gid=1000, additional_gids=(1000, 50000, 1234)))
    assert got == pb.ContainerUser(linux=pb.LinuxContainerUser(
        uid=1000, gid=1000, supplemental_groups=[1000, 50000, 1234]))
