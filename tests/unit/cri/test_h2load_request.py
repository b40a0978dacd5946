"""The unary-RPC benchmark's request: the bytes h2load sends are a well-formed gRPC call
that the server answers with status OK and the right message (bench.cri.h2)."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from bench.cri import h2
from cri.api import runtime_pb2 as pb
from tests.harness.prereq import need_binary
from tests.unit.cri.conftest import Cri
from tests.unit.cri.fakes import FakeContainers

METHOD = "/runtime.v1.RuntimeService/ContainerStatus"


def running(cri: Cri) -> str:
    containers = cri.ports.containers
    assert isinstance(containers, FakeContainers)
    cid = "c" * 64
    containers.items[cid] = pb.Container(id=cid, state=pb.CONTAINER_RUNNING,
                                         metadata=pb.ContainerMetadata(name="web"))
    return cid


def test_the_frame_is_uncompressed_length_prefixed_protobuf() -> None:
    request = pb.ContainerStatusRequest(container_id="a" * 64)
    frame = h2.grpc_frame(request)
    assert frame[0] == 0
    (length,) = struct.unpack(">I", frame[1:5])
    assert length == len(frame) - 5
    assert pb.ContainerStatusRequest.FromString(frame[5:]) == request


def test_the_payload_gets_status_ok_and_the_right_answer(cri: Cri) -> None:
    cid = running(cri)
    request = pb.ContainerStatusRequest(container_id=cid)
    raw = cri.channel.unary_unary(METHOD, request_serializer=None,  # the exact bytes
                                   response_deserializer=None)
    answer = pb.ContainerStatusResponse.FromString(raw(h2.grpc_frame(request)[5:], timeout=30))
    assert (answer.status.id, answer.status.state) == (cid, pb.CONTAINER_RUNNING)

    def verify(data: bytes) -> str:
        return "" if pb.ContainerStatusResponse.FromString(data).status.id == cid else "no"

    h2.check(cri.server.endpoint, METHOD, request, verify)


def test_h2load_sends_it_and_every_request_is_answered(cri: Cri, tmp_path: Path) -> None:
    need_binary(h2.H2LOAD, h2.INSTALL)
    cid = running(cri)
    body = tmp_path / "status.grpc"
    body.write_bytes(h2.grpc_frame(pb.ContainerStatusRequest(container_id=cid)))
    result = h2.run(socket=cri.server.path, method=METHOD, body=body, clients=2, streams=2,
                    seconds=1, warmup_s=0.2)
    assert result.failed == 0 and result.succeeded == result.requests > 0
    assert len(result.latencies_ms) == result.succeeded
    assert result.rps == result.succeeded / 1


def test_parse_reads_counts_and_latencies() -> None:
    stdout = ("finished in 2.00s, 3.00 req/s, 1KB/s\n"
              "requests: 7 total, 7 started, 6 done, 5 succeeded, 1 failed, 0 errored, "
              "0 timeout\n")
    log = "1\t200\t1500\n2\t200\t500\n3\t503\t9\n"
    p = h2.parse(stdout, log, seconds=2)
    assert (p.requests, p.succeeded, p.failed) == (6, 5, 1)
    assert p.latencies_ms == (1.5, 0.5) and p.rps == 2.5


def test_a_wrong_status_is_caught(cri: Cri) -> None:
    request = pb.ContainerStatusRequest(container_id="gone")
    with pytest.raises(SystemExit, match="NOT_FOUND"):
        h2.check(cri.server.endpoint, METHOD, request, lambda data: "")
