"""Fixtures of the suites that run against both gRPC servers (ours and grpcio's)."""
from __future__ import annotations

import shutil
from collections.abc import Iterator

import grpc
import pytest

from tests.unit.cri.h2.echo_service import KINDS, Served, serve


@pytest.fixture(scope="module", params=KINDS)
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    s = serve(request.param)
    yield s
    s.stop()
    shutil.rmtree(s.path.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def channel(served: Served) -> Iterator[grpc.Channel]:
    with served.channel() as ch:
        yield ch
