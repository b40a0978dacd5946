"""RuntimeInfo.state(): the CRI Version and Status folded into the node's runtime facts."""
from __future__ import annotations

from typing import Any

from cri.api import runtime_pb2 as pb
from kubelet_py.cri_client.connection import Connection
from kubelet_py.cri_client.info import RuntimeInfo
from kubelet_py.node.setters import RuntimeHandler

from .fakes import run_async


class Stub:
    def __init__(self, status: pb.StatusResponse) -> None:
        self._status = status

    async def Version(self, request: Any, *, timeout: float) -> pb.VersionResponse:
        return pb.VersionResponse(runtime_name="engined", runtime_version="1.0")

    async def Status(self, request: Any, *, timeout: float) -> pb.StatusResponse:
        return self._status


def info(status: pb.StatusResponse) -> RuntimeInfo:
    stub = Stub(status)
    return RuntimeInfo(Connection(channel=None, image_channel=None,  # type: ignore[arg-type]
                                  runtime=stub, image=stub, timeout=1.0))


def ready() -> list[pb.RuntimeCondition]:
    return [pb.RuntimeCondition(type="RuntimeReady", status=True),
            pb.RuntimeCondition(type="NetworkReady", status=True)]


@run_async
async def test_state_carries_the_runtime_handlers_and_features() -> None:
    status = pb.StatusResponse(
        status=pb.RuntimeStatus(conditions=ready()),
        runtime_handlers=[
            pb.RuntimeHandler(name="", features=pb.RuntimeHandlerFeatures(
                recursive_read_only_mounts=True, user_namespaces=True)),
            pb.RuntimeHandler(name="crun", features=pb.RuntimeHandlerFeatures(
                user_namespaces=True)),
            pb.RuntimeHandler(name="kata")])
    state = await info(status).state()
    assert state.handlers == (
        RuntimeHandler(name="", recursive_read_only_mounts=True, user_namespaces=True),
        RuntimeHandler(name="crun", recursive_read_only_mounts=False, user_namespaces=True),
        RuntimeHandler(name="kata", recursive_read_only_mounts=False, user_namespaces=False))
    assert state.runtime.ready and state.network.ready


@run_async
async def test_state_without_handlers_reports_none_known() -> None:
    state = await info(pb.StatusResponse(status=pb.RuntimeStatus(conditions=ready()))).state()
    assert state.handlers == ()
