"""A thousand concurrent requests: all answered precisely, no thread left behind."""
from __future__ import annotations

import threading
import time

import grpc

from cri.api import runtime_pb2 as pb
from tests.harness.grpc_codes import status_counts
from tests.unit.cri.conftest import Cri


def test_a_thousand_concurrent_requests(cri: Cri) -> None:
    before = threading.active_count()
    futures = [cri.runtime.ListContainers.future(pb.ListContainersRequest(), timeout=30)
               for _ in range(1000)]
    codes = status_counts(futures)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert codes.get(grpc.StatusCode.OK, 0) > 0
    deadline = time.monotonic() + 60
    while threading.active_count() > before + 8 and time.monotonic() < deadline:
        time.sleep(0.05)  # the pool (8 workers in the fixture) may stay warm, nothing more
    assert threading.active_count() <= before + 8
