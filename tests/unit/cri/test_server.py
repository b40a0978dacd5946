"""The CRI servicers over a real gRPC channel, with fake engine ports."""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import grpc
import pytest

from cri.api import runtime_pb2 as pb
from cri.server.events import EventBus
from tests.unit.cri.conftest import Cri, full_ports, start
from tests.unit.cri.fakes import (
    FakeContainers,
    FakeImages,
    FakeNetwork,
    FakeSandboxes,
    FakeStats,
)


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        if callable(call):
            call()
    err = info.value
    return err.code(), err.details()  # type: ignore[attr-defined]


def sandbox_config(name: str = "web") -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, namespace="default", uid=f"uid-{name}"),
        labels={"app": name}, log_directory=f"/var/log/pods/default_{name}_uid")


def test_version(cri: Cri) -> None:
    v = cri.runtime.Version(pb.VersionRequest(version="v1"))
    assert (v.runtime_name, v.runtime_version, v.runtime_api_version) == (
        "kubelet-py", "9.9.9", "v1")


def test_status_reports_the_engine_honestly(cri: Cri) -> None:
    network = cri.ports.network
    assert isinstance(network, FakeNetwork)
    network.state = (False, "no CNI conflist in /etc/cni/net.d")
    status = cri.runtime.Status(pb.StatusRequest())
    conditions = {c.type: c for c in status.status.conditions}
    assert conditions["RuntimeReady"].status is True
    assert conditions["NetworkReady"].status is False
    assert conditions["NetworkReady"].reason == "NetworkPluginNotReady"
    assert "conflist" in conditions["NetworkReady"].message
    assert not status.info  # only when verbose
    assert [h.name for h in status.runtime_handlers] == ["", "runc"]


def test_status_of_a_bare_daemon_is_not_ready(bare_cri: Cri) -> None:
    status = bare_cri.runtime.Status(pb.StatusRequest(verbose=True))
    assert [c.status for c in status.status.conditions] == [False, False]
    assert json.loads(status.info["wired"])["images"] is False


def test_runtime_config_is_cgroupfs(cri: Cri) -> None:
    assert cri.runtime.RuntimeConfig(pb.RuntimeConfigRequest()).linux.cgroup_driver == (
        pb.CGROUPFS)


def test_update_runtime_config_hands_the_pod_cidr_to_the_network(cri: Cri) -> None:
    def update(cidr: str) -> None:
        cri.runtime.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
            runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=cidr))))
    update("10.244.1.7/24,fd00:10::/64")
    update("")  # empty: nothing to do
    network = cri.ports.network
    assert isinstance(network, FakeNetwork)
    assert network.cidrs == ["10.244.1.0/24,fd00:10::/64"]
    code, details = code_of(lambda: update("10.0.0.0/8,10.1.0.0/16"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most one" in details


def test_unwired_parts_answer_unimplemented(bare_cri: Cri) -> None:
    code, details = code_of(lambda: bare_cri.runtime.ListContainers(pb.ListContainersRequest()))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert details == "ListContainers: the container runtime is not wired into this engined"
    code, _ = code_of(lambda: bare_cri.images.PullImage(
        pb.PullImageRequest(image=pb.ImageSpec(image="busybox"))))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    code, _ = code_of(lambda: list(bare_cri.runtime.GetContainerEvents(pb.GetEventsRequest())))
    assert code == grpc.StatusCode.UNIMPLEMENTED


def test_unsupported_rpcs_answer_unimplemented(cri: Cri) -> None:
    code, details = code_of(lambda: cri.runtime.CheckpointContainer(
        pb.CheckpointContainerRequest(container_id="x")))
    assert code == grpc.StatusCode.UNIMPLEMENTED and "checkpoint" in details


def test_sandbox_lifecycle_filters_and_idempotence(cri: Cri) -> None:
    sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config())).pod_sandbox_id
    other = cri.runtime.RunPodSandbox(
        pb.RunPodSandboxRequest(config=sandbox_config("db"))).pod_sandbox_id
    listed = cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest(
        filter=pb.PodSandboxFilter(label_selector={"app": "web"})))
    assert [s.id for s in listed.items] == [sid]
    by_prefix = cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest(
        filter=pb.PodSandboxFilter(id=other[:13])))
    assert [s.id for s in by_prefix.items] == [other]
    status = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid))
    assert status.status.id == sid and status.timestamp == 777 and not status.info
    verbose = cri.runtime.PodSandboxStatus(
        pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True))
    assert verbose.info == {"pid": "42"}
    for _ in range(2):  # stopping twice succeeds
        cri.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    ready = cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(
        state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY))))
    assert [s.id for s in ready.items] == [other]
    for _ in range(2):  # removing twice succeeds
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    code, details = code_of(lambda: cri.runtime.PodSandboxStatus(
        pb.PodSandboxStatusRequest(pod_sandbox_id=sid)))
    assert code == grpc.StatusCode.NOT_FOUND and sid in details
    sandboxes = cri.ports.sandboxes
    assert isinstance(sandboxes, FakeSandboxes) and sandboxes.stops == [sid, sid]


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda c: c.metadata.ClearField("name"), "config.metadata.name is required"),
    (lambda c: setattr(c, "log_directory", "/var/log/../../etc"), "may not contain '..'"),
    (lambda c: setattr(c, "log_directory", "relative/dir"), "must be an absolute path"),
    (lambda c: c.port_mappings.add(container_port=70000), "is not a port"),
    (lambda c: c.port_mappings.add(container_port=80, protocol=9), "not a known Protocol"),
])
def test_run_sandbox_rejects_bad_configs(cri: Cri, mutate, needle: str) -> None:  # type: ignore[no-untyped-def]
    config = sandbox_config()
    mutate(config)
    code, details = code_of(lambda: cri.runtime.RunPodSandbox(
        pb.RunPodSandboxRequest(config=config)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in details


def test_container_lifecycle_and_errors(cri: Cri) -> None:
    sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config())).pod_sandbox_id
    config = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"),
                                image=pb.ImageSpec(image="busybox"), log_path="c/0.log",
                                labels={"k": "v"})
    cid = cri.runtime.CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=sid, config=config, sandbox_config=sandbox_config())).container_id
    cri.runtime.StartContainer(pb.StartContainerRequest(container_id=cid))
    code, _ = code_of(lambda: cri.runtime.StartContainer(
        pb.StartContainerRequest(container_id=cid)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    running = cri.runtime.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(
        pod_sandbox_id=sid, state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING))))
    assert [c.id for c in running.containers] == [cid]
    out = cri.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["echo", "hi"]))
    assert (out.stdout, out.exit_code) == (b"echo hi", 3)
    code, details = code_of(lambda: cri.runtime.StopContainer(
        pb.StopContainerRequest(container_id=cid, timeout=-1)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "timeout" in details
    cri.runtime.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10))
    cri.runtime.StopContainer(pb.StopContainerRequest(container_id="gone", timeout=1))
    containers = cri.ports.containers
    assert isinstance(containers, FakeContainers) and containers.stopped == [(cid, 10)]
    cri.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    cri.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    code, _ = code_of(lambda: cri.runtime.ContainerStatus(
        pb.ContainerStatusRequest(container_id=cid)))
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(("config", "needle"), [
    (pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"),
                        image=pb.ImageSpec(image="i"), log_path="../../etc/passwd"),
     "may not contain '..'"),
    (pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image="i"),
                        mounts=[pb.Mount(container_path="/d", host_path="/srv/../etc")]),
     "may not contain '..'"),
    (pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image="i"),
                        command=["x" * (10 << 20)]),
     "a process can be given"),
    (pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image="i"),
                        stop_signal=999),  # type: ignore[arg-type]
     "not a known Signal"),
    (pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c")), "config.image.image"),
    (pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image="i"),
                        linux=pb.LinuxContainerConfig(
                            security_context=pb.LinuxContainerSecurityContext(
                                run_as_group=pb.Int64Value(value=5)))),
     "run_as_group needs run_as_user"),
])
def test_create_container_rejects_bad_configs(cri: Cri, config: pb.ContainerConfig,
                                              needle: str) -> None:
    code, details = code_of(lambda: cri.runtime.CreateContainer(
        pb.CreateContainerRequest(pod_sandbox_id="s", config=config)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in details


def test_streaming_endpoints_validate_then_return_urls(cri: Cri) -> None:
    url = cri.runtime.Exec(pb.ExecRequest(container_id="c1", cmd=["sh"], stdout=True)).url
    assert url.endswith("/exec/c1")
    code, _ = code_of(lambda: cri.runtime.Exec(pb.ExecRequest(container_id="c1", cmd=["sh"])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # no stream requested
    code, _ = code_of(lambda: cri.runtime.Attach(pb.AttachRequest(
        container_id="c1", tty=True, stdout=True, stderr=True)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = code_of(lambda: cri.runtime.PortForward(pb.PortForwardRequest(
        pod_sandbox_id="s", port=[0])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_images(cri: Cri) -> None:
    ref = cri.images.PullImage(pb.PullImageRequest(
        image=pb.ImageSpec(image="busybox:1"),
        auth=pb.AuthConfig(username="u", password="p"))).image_ref
    images = cri.ports.images
    assert isinstance(images, FakeImages)
    assert images.auths[0] is not None and images.auths[0].password == "p"
    assert "p" not in repr(images.auths[0]).replace("username", "")
    status = cri.images.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image="busybox:1")))
    assert status.image.id == ref and status.image.uid.value == 0
    missing = cri.images.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image="nope")))
    assert not missing.HasField("image")
    listed = cri.images.ListImages(pb.ListImagesRequest(
        filter=pb.ImageFilter(image=pb.ImageSpec(image=ref[:20]))))
    assert [i.id for i in listed.images] == [ref]
    code, _ = code_of(lambda: cri.images.PullImage(pb.PullImageRequest(
        image=pb.ImageSpec(image="unreachable.example/x"))))
    assert code == grpc.StatusCode.UNAVAILABLE
    code, _ = code_of(lambda: cri.images.PullImage(pb.PullImageRequest(
        image=pb.ImageSpec(image="bad ref"))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    cri.images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))
    cri.images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))
    fs = cri.images.ImageFsInfo(pb.ImageFsInfoRequest())
    assert fs.image_filesystems[0].fs_id.mountpoint == "/var/lib/x"


def test_stats_list_stream_in_batches(cri: Cri) -> None:
    listed = cri.runtime.ListContainerStats(pb.ListContainerStatsRequest(
        filter=pb.ContainerStatsFilter(pod_sandbox_id="sb12")))
    assert {s.attributes.id for s in listed.stats} == {f"c{i}" for i in range(12, 130)
                                                      if f"sb{i}".startswith("sb12")}
    batches = list(cri.runtime.StreamContainerStats(pb.StreamContainerStatsRequest()))
    assert [len(b.container_stats) for b in batches] == [100, 100, 50]
    assert list(cri.runtime.StreamPodSandboxStats(pb.StreamPodSandboxStatsRequest())) == []
    code, _ = code_of(lambda: cri.runtime.ContainerStats(
        pb.ContainerStatsRequest(container_id="nope")))
    assert code == grpc.StatusCode.NOT_FOUND


def _wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_container_events_stream_and_cleanup_on_disconnect(cri: Cri) -> None:
    bus = cri.ports.events
    assert isinstance(bus, EventBus)
    stream = cri.runtime.GetContainerEvents(pb.GetEventsRequest())
    received: list[pb.ContainerEventResponse] = []

    def read() -> None:
        try:
            for event in stream:
                received.append(event)
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read)
    reader.start()
    assert _wait_for(lambda: bus.subscriber_count() == 1)
    bus.publish(pb.ContainerEventResponse(container_id="c1",
                                          container_event_type=pb.CONTAINER_STARTED_EVENT))
    assert _wait_for(lambda: len(received) == 1)
    assert received[0].container_id == "c1"
    stream.cancel()  # the client goes away
    reader.join(30)
    assert not reader.is_alive()
    assert _wait_for(lambda: bus.subscriber_count() == 0)


def test_a_slow_event_subscriber_is_cut_off(cri: Cri) -> None:
    bus = cri.ports.events
    assert isinstance(bus, EventBus)
    sub = bus.subscribe()
    for i in range(6):  # max_backlog is 5 in the fixture
        bus.publish(pb.ContainerEventResponse(container_id=str(i)))
    with pytest.raises(Exception, match="fell more than 5 events behind"):
        sub.get(0)
    sub.close()
    assert bus.subscriber_count() == 0


def test_pod_sandbox_metrics_follow_the_stats(cri: Cri) -> None:
    stats = cri.ports.stats
    assert isinstance(stats, FakeStats)
    stats.sandboxes = [pb.PodSandboxStats(
        attributes=pb.PodSandboxAttributes(
            id="s1", metadata=pb.PodSandboxMetadata(name="web", namespace="ns")),
        linux=pb.LinuxPodSandboxStats(
            cpu=pb.CpuUsage(usage_core_nano_seconds=pb.UInt64Value(value=5)),
            memory=pb.MemoryUsage(working_set_bytes=pb.UInt64Value(value=7)),
            containers=[pb.ContainerStats(
                attributes=pb.ContainerAttributes(id="c1", metadata=pb.ContainerMetadata(
                    name="app")),
                cpu=pb.CpuUsage(usage_core_nano_seconds=pb.UInt64Value(value=3)))]))]
    descriptors = cri.runtime.ListMetricDescriptors(pb.ListMetricDescriptorsRequest())
    names = {d.name for d in descriptors.descriptors}
    assert "container_cpu_usage_nanoseconds_total" in names
    (pod,) = cri.runtime.ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest()).pod_metrics
    assert {m.name for m in pod.metrics} == names  # every metric has a descriptor
    pod_values = {m.name: m.value.value for m in pod.metrics}
    assert pod_values["container_cpu_usage_nanoseconds_total"] == 5
    assert pod_values["container_memory_working_set_bytes"] == 7
    (container,) = pod.container_metrics
    cpu = next(m for m in container.metrics if m.name.startswith("container_cpu"))
    assert (container.container_id, cpu.value.value) == ("c1", 3)
    assert list(cpu.label_values) == ["ns", "web", "app"]
    assert cpu.metric_type == pb.COUNTER
    streamed = list(cri.runtime.StreamPodSandboxMetrics(pb.StreamPodSandboxMetricsRequest()))
    assert [len(b.pod_sandbox_metrics) for b in streamed] == [1]


class _RroContainers(FakeContainers):
    def __init__(self, supported: bool) -> None:
        super().__init__()
        self.supported = supported

    def recursive_read_only_mounts(self) -> bool:
        return self.supported

    def supplemental_groups_policy(self) -> bool:
        return not self.supported


@pytest.mark.parametrize("supported", [True, False])
def test_status_reports_the_containers_features(sock_dir: Path, supported: bool) -> None:
    ports = dataclasses.replace(full_ports(), containers=_RroContainers(supported))
    c = start(ports, sock_dir)
    try:
        status = c.runtime.Status(pb.StatusRequest())
        assert [(h.name, h.features.recursive_read_only_mounts)
                for h in status.runtime_handlers] == [("", supported), ("runc", supported)]
        assert status.features.supplemental_groups_policy is (not supported)
    finally:
        c.channel.close()
        c.server.stop(0.5)


def test_status_without_the_feature_port_claims_nothing(cri: Cri) -> None:
    status = cri.runtime.Status(pb.StatusRequest())
    assert not any(h.features.recursive_read_only_mounts for h in status.runtime_handlers)
    assert not status.features.supplemental_groups_policy
