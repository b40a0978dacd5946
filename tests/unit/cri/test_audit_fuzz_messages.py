"""Hypothesis fuzz of the servicer with well-formed messages holding hostile values.

The random-bytes fuzz (test_fuzz.py) mostly exercises decoding; here every request decodes
and its fields hold what a careless client sends (unknown enum numbers, negative
timeouts, `..` paths, NUL bytes). The checks and the CRI -> engine translations must answer
each with an error of the engine or CRI tree (a precise status), never a bare Python
exception (INTERNAL).
"""
from __future__ import annotations

import re

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cri.api import runtime_pb2 as pb
from cri.errors import is_mapped
from cri.server import engine_translate as tr
from cri.server.containers import check_container_config
from cri.server.dispatch import Message, service_methods
from cri.server.sandboxes import check_sandbox_config
from engine.errors import InvalidArgument
from tests.unit.cri.conftest import Cri
from tests.unit.cri.message_strategy import messages

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _translated(run: object) -> None:
    try:
        run()  # type: ignore[operator]
    except Exception as exc:  # the point: which exceptions escape
        assert is_mapped(exc), f"{type(exc).__name__}: {exc}"


@st.composite
def sandbox_configs(draw: st.DrawFn) -> pb.PodSandboxConfig:
    """Mostly past the required-field checks, so the deeper checks get fuzzed too."""
    config = draw(messages(pb.PodSandboxConfig))
    if draw(st.integers(0, 4)):
        meta = config.metadata
        meta.name, meta.namespace, meta.uid = meta.name or "p", meta.namespace or "n", \
            meta.uid or "u"
    return config


@st.composite
def container_configs(draw: st.DrawFn) -> pb.ContainerConfig:
    config = draw(messages(pb.ContainerConfig))
    if draw(st.integers(0, 4)):
        config.metadata.name = config.metadata.name or "c"
        config.image.image = config.image.image or "busybox"
    return config


@FUZZ
@given(config=sandbox_configs(), handler=st.sampled_from(["", "runc", "x/.."]))
def test_sandbox_configs_are_checked_then_translated_or_refused(
        config: pb.PodSandboxConfig, handler: str) -> None:
    def run() -> None:
        check_sandbox_config(config)
        tr.sandbox_config(config, runtime_handler=handler)
    _translated(run)


@FUZZ
@given(config=container_configs())
def test_container_configs_are_checked_then_translated_or_refused(
        config: pb.ContainerConfig) -> None:
    def run() -> None:
        check_container_config(config)
        tr.container_config(config)
    _translated(run)


@FUZZ
@given(container=container_configs(), sandbox=sandbox_configs())
def test_a_containers_user_namespace_is_compared_or_refused(
        container: pb.ContainerConfig, sandbox: pb.PodSandboxConfig) -> None:
    def run() -> None:  # in the order CreateContainer meets them
        check_sandbox_config(sandbox)
        pod = tr.sandbox_config(sandbox, runtime_handler="")
        check_container_config(container)
        tr.container_config(container)
        tr.check_container_user_namespace(container, pod)
    _translated(run)


@pytest.mark.parametrize(("config", "needle"), [
    (pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image="i"),
                        linux=pb.LinuxContainerConfig(
                            security_context=pb.LinuxContainerSecurityContext(
                                seccomp=pb.SecurityProfile(profile_type=7)))),  # type: ignore[arg-type]
     "seccomp.profile_type"),
    (pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image="i"),
                        linux=pb.LinuxContainerConfig(
                            security_context=pb.LinuxContainerSecurityContext(
                                apparmor=pb.SecurityProfile(profile_type=9)))),  # type: ignore[arg-type]
     "apparmor.profile_type"),
])
def test_unknown_security_profile_types_are_invalid(config: pb.ContainerConfig,
                                                    needle: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(needle)):
        check_container_config(config)


def test_an_unknown_user_namespace_mode_is_invalid() -> None:
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="p", namespace="n", uid="u"),
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(
                userns_options=pb.UserNamespace(mode=42)))))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"userns_options\.mode"):
        check_sandbox_config(config)
        tr.sandbox_config(config, runtime_handler="")


UNARY = [(service, name, m.request) for service in ("RuntimeService", "ImageService")
         for name, m in service_methods(service).items() if not m.server_streaming]
# What a well-behaved servicer may answer; never INTERNAL or UNKNOWN.
PRECISE = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.FAILED_PRECONDITION,
           grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.UNAVAILABLE}


@st.composite
def requests(draw: st.DrawFn, methods: list[tuple[str, str, type[Message]]]
             ) -> tuple[str, str, bytes]:
    """(service, method, encoded request) for one of `methods` [(service, name, class)]."""
    service, name, cls = draw(st.sampled_from(methods))
    return service, name, draw(messages(cls)).SerializeToString()


@FUZZ
@given(call=requests(UNARY))
def test_well_formed_hostile_requests_get_precise_statuses(
        cri: Cri, call: tuple[str, str, bytes]) -> None:
    service, name, data = call
    rpc = cri.channel.unary_unary(f"/runtime.v1.{service}/{name}")
    try:
        rpc(data, timeout=10)
    except grpc.RpcError as err:
        assert err.code() in PRECISE, (name, err.details())  # type: ignore[attr-defined]


STREAMS = [(service, name, m.request) for service in ("RuntimeService", "ImageService")
           for name, m in service_methods(service).items()
           if m.server_streaming and name != "GetContainerEvents"]  # that one never ends


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(call=requests(STREAMS))
def test_hostile_requests_to_the_listing_streams_get_precise_statuses(
        cri: Cri, call: tuple[str, str, bytes]) -> None:
    service, name, data = call
    rpc = cri.channel.unary_stream(f"/runtime.v1.{service}/{name}")
    try:
        for _ in rpc(data, timeout=10):
            pass
    except grpc.RpcError as err:
        assert err.code() in PRECISE, (name, err.details())  # type: ignore[attr-defined]
