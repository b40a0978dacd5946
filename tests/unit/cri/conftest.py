"""A CRI server on a private unix socket, over fake engine ports."""
from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cri.api import runtime_pb2_grpc
from cri.server.events import EventBus
from cri.server.ports import Ports
from cri.server.serve import CriServer
from tests.unit.cri.fakes import (
    FakeContainers,
    FakeImages,
    FakeNetwork,
    FakeSandboxes,
    FakeStats,
    FakeStreaming,
)


@dataclasses.dataclass
class Cri:
    server: CriServer
    channel: grpc.Channel
    runtime: runtime_pb2_grpc.RuntimeServiceStub
    images: runtime_pb2_grpc.ImageServiceStub
    ports: Ports


def full_ports() -> Ports:
    return Ports(runtime_version="9.9.9", runtime_handlers=("runc",), sandboxes=FakeSandboxes(),
                 containers=FakeContainers(), images=FakeImages(), network=FakeNetwork(),
                 streaming=FakeStreaming(), stats=FakeStats(), events=EventBus(max_backlog=5))


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # unix socket paths are limited to 108 bytes: keep them short, under /tmp
    with tempfile.TemporaryDirectory(prefix="cri-", dir="/tmp") as d:
        yield Path(d)


def start(ports: Ports, sock_dir: Path) -> Cri:
    server = CriServer(listen=f"unix://{sock_dir}/cri.sock", ports=ports, max_workers=8,
                       clock_ns=lambda: 777, events_poll_s=0.05)
    server.start()
    channel = grpc.insecure_channel(server.endpoint)
    return Cri(server, channel, runtime_pb2_grpc.RuntimeServiceStub(channel),
               runtime_pb2_grpc.ImageServiceStub(channel), ports)


@pytest.fixture
def cri(sock_dir: Path) -> Iterator[Cri]:
    c = start(full_ports(), sock_dir)
    yield c
    c.channel.close()
    c.server.stop(0.5)


@pytest.fixture
def bare_cri(sock_dir: Path) -> Iterator[Cri]:
    c = start(Ports(), sock_dir)
    yield c
    c.channel.close()
    c.server.stop(0.5)
