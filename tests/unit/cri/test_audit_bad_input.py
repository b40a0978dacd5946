"""Bad input of issue #5 not covered elsewhere: each RPC family with a 10 MB command line,
negative timeouts, unknown enum numbers in filters, `..` in every path field; and no thread
or file descriptor left behind by a burst of them."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import grpc
import pytest

from cri.api import runtime_pb2 as pb
from tests.unit.cri.conftest import Cri

HUGE = ["x" * (10 << 20)]  # a 10 MB command line


def _status(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as err:
        return err.code(), err.details()  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, ""


def _container(cri: Cri) -> str:
    sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="p", namespace="n", uid="u")))).pod_sandbox_id
    return cri.runtime.CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=sid, config=pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image="i")))
    ).container_id


def test_a_10mb_command_line_is_refused_by_exec_sync_and_exec(cri: Cri) -> None:
    cid = _container(cri)
    for call in (lambda: cri.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=HUGE)),
                 lambda: cri.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=HUGE,
                                                         stdout=True))):
        code, details = _status(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "cmd is 10485761 bytes" in details


def test_negative_exec_sync_timeout_and_bad_resources(cri: Cri) -> None:
    cid = _container(cri)
    code, details = _status(lambda: cri.runtime.ExecSync(pb.ExecSyncRequest(
        container_id=cid, cmd=["true"], timeout=-5)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "timeout must not be negative" in details
    code, details = _status(lambda: cri.runtime.UpdateContainerResources(
        pb.UpdateContainerResourcesRequest(container_id=cid, linux=pb.LinuxContainerResources(
            memory_limit_in_bytes=-1))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "memory_limit_in_bytes" in details
    code, details = _status(lambda: cri.runtime.StopContainer(pb.StopContainerRequest(
        container_id=cid, timeout=10**9)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "more than a day" in details


def test_unknown_states_in_list_filters_are_invalid(cri: Cri) -> None:
    code, details = _status(lambda: cri.runtime.ListContainers(pb.ListContainersRequest(
        filter=pb.ContainerFilter(state=pb.ContainerStateValue(state=77)))))  # type: ignore[arg-type]
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "filter.state: 77 is not a known ContainerState" in details
    code, details = _status(lambda: cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest(
        filter=pb.PodSandboxFilter(state=pb.PodSandboxStateValue(state=-2)))))  # type: ignore[arg-type]
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "filter.state: -2 is not a known PodSandboxState" in details
    # a known state still filters
    assert cri.runtime.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(
        state=pb.ContainerStateValue(state=pb.CONTAINER_EXITED)))).containers == []


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda c: setattr(c, "working_dir", "/w/../../etc"), "config.working_dir"),
    (lambda c: c.mounts.add(container_path="/a/../../b", host_path="/srv"),
     "config.mounts[0].container_path"),
    (lambda c: c.mounts.add(container_path="/a", image=pb.ImageSpec(image="i"),
                            image_sub_path="../x"), "config.mounts[0].image_sub_path"),
    (lambda c: c.devices.add(container_path="/dev/../x", host_path="/dev/null",
                             permissions="r"), "config.devices[0].container_path"),
    (lambda c: setattr(c, "log_path", "c/\x00.log"), "contains a NUL byte"),
    (lambda c: c.mounts.add(container_path="/a", host_path="/srv", propagation=12),
     "config.mounts[0].propagation"),
    (lambda c: setattr(c.linux.security_context.namespace_options, "ipc", 9),
     "namespace_options.ipc"),
])
def test_every_path_and_enum_field_of_a_container_is_checked(
        cri: Cri, mutate: Callable[[pb.ContainerConfig], object], field: str) -> None:
    config = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"),
                                image=pb.ImageSpec(image="i"))
    mutate(config)
    code, details = _status(lambda: cri.runtime.CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id="s", config=config)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details


def test_absurd_resources_are_refused_at_create(cri: Cri) -> None:
    for resources, needle in ((pb.LinuxContainerResources(oom_score_adj=5000), "oom_score_adj"),
                              (pb.LinuxContainerResources(memory_limit_in_bytes=-1),
                               "memory_limit_in_bytes must not be negative")):
        config = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"),
                                    image=pb.ImageSpec(image="i"),
                                    linux=pb.LinuxContainerConfig(resources=resources))
        code, details = _status(lambda config=config: cri.runtime.CreateContainer(
            pb.CreateContainerRequest(pod_sandbox_id="s", config=config)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert f"config.linux.resources.{needle}" in details


def test_a_cgroup_parent_with_dotdot_is_refused(cri: Cri) -> None:
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="p", namespace="n", uid="u"),
        linux=pb.LinuxPodSandboxConfig(cgroup_parent="/kubepods/../../escape"))
    code, details = _status(lambda: cri.runtime.RunPodSandbox(
        pb.RunPodSandboxRequest(config=config)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.linux.cgroup_parent" in details and "'..'" in details


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda c: setattr(c, "hostname", "web\n6.6.6.6 evil"), "config.hostname"),
    (lambda c: setattr(c, "hostname", "h" * 65), "longer than 64 bytes"),
    (lambda c: c.dns_config.servers.append("10.0.0.10\nnameserver 6.6.6.6"),
     "config.dns_config.servers[0]"),
    (lambda c: c.dns_config.servers.append("dns.example"), "is not an IP address"),
    (lambda c: c.dns_config.searches.append("ns.svc cluster.local"),
     "config.dns_config.searches[0]"),
    (lambda c: c.dns_config.options.append("ndots:5\x00"), "config.dns_config.options[0]"),
])
def test_sandbox_file_lines_cannot_be_injected(
        cri: Cri, mutate: Callable[[pb.PodSandboxConfig], object], needle: str) -> None:
    """hostname and dns_config become lines of the pod's hosts and resolv.conf."""
    config = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="p", namespace="n",
                                                                uid="u"))
    mutate(config)
    code, details = _status(lambda: cri.runtime.RunPodSandbox(
        pb.RunPodSandboxRequest(config=config)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in details


def test_ordinary_hostname_and_dns_config_pass(cri: Cri) -> None:
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="p2", namespace="n", uid="u2"), hostname="web-0",
        dns_config=pb.DNSConfig(servers=["10.96.0.10", "fd00::a"],
                                searches=["n.svc.cluster.local", "cluster.local"],
                                options=["ndots:5", "edns0"]))
    assert cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=config)).pod_sandbox_id


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_burst_of_bad_requests_leaks_no_thread_or_file(cri: Cri) -> None:
    raw = [cri.channel.unary_unary(f"/runtime.v1.RuntimeService/{name}")
           for name in ("CreateContainer", "ExecSync", "StopContainer", "RunPodSandbox")]

    def burst() -> None:
        for i in range(50):
            for rpc in raw:
                _status(lambda rpc=rpc, i=i: rpc(bytes([0x0A, 0x7F, i % 256]) + b"\xff" * i,
                                                 timeout=10))
            _status(lambda: cri.runtime.ExecSync(pb.ExecSyncRequest(
                container_id="c", cmd=["x"], timeout=-1)))

    burst()  # warm: the pool's threads and the channel's sockets exist after this
    before, fds = set(threading.enumerate()), _fds()
    burst()
    deadline = time.monotonic() + 60

    def new_threads() -> list[str]:
        return sorted(t.name for t in threading.enumerate() if t not in before)

    while (new_threads() or _fds() > fds) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert new_threads() == []
    assert _fds() <= fds
