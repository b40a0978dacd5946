"""engined's choice of gRPC server (--grpc-server / grpc_server), and the CRI served by
each: the same answers, the same socket semantics (0660, a live socket refused, ours
removed on stop), a malformed protobuf INVALID_ARGUMENT on both."""
from __future__ import annotations

import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cri.api import runtime_pb2 as pb
from cri.api import runtime_pb2_grpc
from cri.daemon import build_parser, options_from_args
from cri.server.ports import Ports
from cri.server.serve import DEFAULT_GRPC_SERVER, GRPC_SERVERS, CriServer
from engine.errors import AlreadyExists
from tests.unit.cri.conftest import full_ports


def test_flag_and_config_key(tmp_path: Path) -> None:
    assert options_from_args(build_parser().parse_args([])).grpc_server == DEFAULT_GRPC_SERVER
    assert options_from_args(build_parser().parse_args(
        ["--grpc-server", "grpcio"])).grpc_server == "grpcio"
    config = tmp_path / "engined.yaml"
    config.write_text("grpc_server: grpcio\n")
    ns = build_parser().parse_args(["--config", str(config)])
    assert options_from_args(ns).grpc_server == "grpcio"
    config.write_text("grpc_server: nghttp2\n")
    with pytest.raises(SystemExit, match="grpc_server"):
        options_from_args(build_parser().parse_args(["--config", str(config)]))
    with pytest.raises(ValueError, match="grpc_server"):
        CriServer(listen="unix:///tmp/x.sock", ports=Ports(), grpc_server="nghttp2")


@pytest.fixture(params=GRPC_SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[CriServer]:
    with tempfile.TemporaryDirectory(prefix="crisel-", dir="/tmp") as d:
        s = CriServer(listen=f"unix://{d}/cri.sock", ports=full_ports(), max_workers=4,
                      grpc_server=request.param)
        s.start()
        try:
            yield s
        finally:
            s.stop(0.5)


def test_each_server_serves_the_cri_on_a_0660_socket(server: CriServer) -> None:
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o660
    with grpc.insecure_channel(server.endpoint) as ch:
        runtime = runtime_pb2_grpc.RuntimeServiceStub(ch)
        assert runtime.Version(pb.VersionRequest()).runtime_api_version == "v1"
        listed = runtime.ListContainers(pb.ListContainersRequest(), timeout=10)
        assert isinstance(listed, pb.ListContainersResponse)
        raw = ch.unary_unary("/runtime.v1.RuntimeService/ContainerStatus")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\x0a\xff\xff", timeout=10)  # field 1 claims more bytes than follow
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_live_socket_is_refused_and_ours_removed_on_stop(server: CriServer) -> None:
    other = CriServer(listen=server.endpoint, ports=Ports(), grpc_server=server.grpc_server)
    with pytest.raises(AlreadyExists):
        other.start()
    assert server.path.exists()
    server.stop(0.5)
    assert not server.path.exists()
    with socket.socket(socket.AF_UNIX) as probe, pytest.raises(OSError):
        probe.connect(str(server.path))
