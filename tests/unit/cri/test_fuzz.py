"""Random and malformed request bytes: a precise status for each, never a crash."""
from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cri.server.dispatch import service_methods
from tests.unit.cri.conftest import Cri

METHODS = [(service, name) for service in ("RuntimeService", "ImageService")
           for name, m in service_methods(service).items() if not m.server_streaming]
# Codes a well-behaved servicer may give to arbitrary input; never INTERNAL or UNKNOWN.
PRECISE = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.FAILED_PRECONDITION,
           grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.UNAVAILABLE}


def call_raw(cri: Cri, service: str, name: str, data: bytes) -> grpc.StatusCode:
    rpc = cri.channel.unary_unary(f"/runtime.v1.{service}/{name}")
    try:
        rpc(data, timeout=10)
    except grpc.RpcError as err:
        code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
        return code
    return grpc.StatusCode.OK


def test_truncated_varint_is_invalid_argument(cri: Cri) -> None:
    # field 1, wire type varint, then a varint that never ends
    assert call_raw(cri, "RuntimeService", "StopContainer", b"\x08\xff\xff") == (
        grpc.StatusCode.INVALID_ARGUMENT)
    rpc = cri.channel.unary_unary("/runtime.v1.RuntimeService/ContainerStatus")
    with pytest.raises(grpc.RpcError) as info:
        rpc(b"\x0a\x05ab", timeout=10)  # a string field claiming more bytes than sent
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "not a valid runtime.v1.ContainerStatusRequest" in err.details()  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(METHODS), data=st.binary(max_size=256))
def test_random_bytes_get_precise_statuses(cri: Cri, method: tuple[str, str],
                                           data: bytes) -> None:
    service, name = method
    assert call_raw(cri, service, name, data) in PRECISE


def test_server_survives_the_fuzzing(cri: Cri) -> None:
    for service, name in METHODS:
        call_raw(cri, service, name, b"\xff" * 64)
    from cri.api import runtime_pb2 as pb
    assert cri.runtime.Version(pb.VersionRequest()).runtime_api_version == "v1"
