"""/stats/summary from CRI stats and a fake /proc; /metrics in the Prometheus text format."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cri.api import runtime_pb2 as pb
from kubelet_py.pods.model import Pod
from kubelet_py.server.host_stats import HostStats, cpu_nanoseconds, memory
from kubelet_py.server.metrics import KubeletMetrics, render, request_path
from kubelet_py.server.stats import SummaryProvider

from .fakes import ManualClock, run_async

STAT = "cpu  100 20 30 1000 50 5 5 0 0 0\ncpu0 100 20 30 1000 50 5 5 0 0 0\nbtime 1700000000\n"
MEMINFO = "MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 600 kB\n"
VMSTAT = "pgfault 42\npgmajfault 7\n"


def fake_proc(root: Path, stat: str = STAT) -> Path:
    (root / "sys" / "kernel").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(stat)
    (root / "meminfo").write_text(MEMINFO)
    (root / "vmstat").write_text(VMSTAT)
    (root / "loadavg").write_text("0.1 0.2 0.3 2/345 999\n")
    (root / "sys" / "kernel" / "pid_max").write_text("4194304\n")
    return root


def u64(v: int) -> pb.UInt64Value:
    return pb.UInt64Value(value=v)


def sandbox_stats(name: str, attempt: int, *, with_containers: bool = True) -> pb.PodSandboxStats:
    ts = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
    containers = [pb.ContainerStats(
        attributes=pb.ContainerAttributes(id="c1", metadata=pb.ContainerMetadata(name="app")),
        cpu=pb.CpuUsage(timestamp=ts, usage_core_nano_seconds=u64(5_000)),
        memory=pb.MemoryUsage(timestamp=ts, working_set_bytes=u64(4096)),
        writable_layer=pb.FilesystemUsage(timestamp=ts, used_bytes=u64(12)))] \
        if with_containers else []
    return pb.PodSandboxStats(
        attributes=pb.PodSandboxAttributes(id=f"sb{attempt}", metadata=pb.PodSandboxMetadata(
            name=name, namespace="ns", uid="u1", attempt=attempt)),
        linux=pb.LinuxPodSandboxStats(
            cpu=pb.CpuUsage(timestamp=ts, usage_core_nano_seconds=u64(9_000),
                            usage_nano_cores=u64(123)),
            memory=pb.MemoryUsage(timestamp=ts, working_set_bytes=u64(8192),
                                  usage_bytes=u64(9000)),
            network=pb.NetworkUsage(timestamp=ts, default_interface=pb.NetworkInterfaceUsage(
                name="eth0", rx_bytes=u64(10), tx_bytes=u64(20)), interfaces=[
                pb.NetworkInterfaceUsage(name="eth0", rx_bytes=u64(10), tx_bytes=u64(20))]),
            containers=containers))


class Runtime:
    async def sandboxes(self) -> list[pb.PodSandboxStats]:
        return [sandbox_stats("web", 0, with_containers=False), sandbox_stats("web", 1)]

    async def containers(self) -> list[pb.ContainerStats]:
        raise AssertionError("sandbox stats answered: container stats not needed")

    async def image_fs(self) -> list[pb.FilesystemUsage]:
        return [pb.FilesystemUsage(fs_id=pb.FilesystemIdentifier(mountpoint="/var/lib/x"),
                                   used_bytes=u64(777), inodes_used=u64(9))]


class Pods:
    def find(self, namespace: str, name: str) -> Pod | None:
        if (namespace, name) != ("ns", "web"):
            return None
        return {"status": {"startTime": "2026-01-01T00:00:00Z", "containerStatuses": [
            {"name": "app", "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}}]}}


def test_proc_parsing() -> None:
    import os
    hz = os.sysconf("SC_CLK_TCK")
    assert cpu_nanoseconds(STAT) == (100 + 20 + 30 + 5 + 5) * 1_000_000_000 // hz
    mem = memory(MEMINFO, VMSTAT)
    assert (mem.total, mem.available, mem.free) == (1_024_000, 614_400, 204_800)
    assert (mem.page_faults, mem.major_page_faults) == (42, 7)


def test_host_cpu_rate_from_two_samples(tmp_path: Path) -> None:
    import os
    hz = os.sysconf("SC_CLK_TCK")
    clock = ManualClock()
    host = HostStats(clock=clock, proc=fake_proc(tmp_path))
    assert host.cpu().usage_nano_cores is None
    clock.advance(2.0)
    fake_proc(tmp_path, STAT.replace("cpu  100", f"cpu  {100 + hz}"))
    assert host.cpu().usage_nano_cores == 500_000_000  # one core-second in two seconds


@run_async
async def test_summary(tmp_path: Path) -> None:
    clock = ManualClock(dt.datetime(2026, 1, 1, 0, 0, 5, tzinfo=dt.UTC))
    provider = SummaryProvider(node_name="n1", runtime=Runtime(), pods=Pods(),
                               host=HostStats(clock=clock, proc=fake_proc(tmp_path / "proc")),
                               root_dir=tmp_path, clock=clock)
    summary: dict[str, Any] = await provider.summary()
    node = summary["node"]
    assert node["nodeName"] == "n1"
    assert node["startTime"] == "2023-11-14T22:13:20Z"
    assert node["memory"]["workingSetBytes"] == 1_024_000 - 614_400
    assert node["memory"]["availableBytes"] == 614_400
    assert node["fs"]["capacityBytes"] > 0 and node["fs"]["time"] == "2026-01-01T00:00:05Z"
    assert node["rlimit"] == {"time": "2026-01-01T00:00:05Z", "maxpid": 4194304,
                              "curproc": 345}
    assert node["runtime"]["imageFs"]["usedBytes"] == 777
    [pod] = summary["pods"]  # the newer sandbox of the two wins
    assert pod["podRef"] == {"name": "web", "namespace": "ns", "uid": "u1"}
    assert pod["startTime"] == "2026-01-01T00:00:00Z"
    assert pod["cpu"] == {"time": "2026-01-01T00:00:00Z", "usageNanoCores": 123,
                          "usageCoreNanoSeconds": 9000}
    assert "availableBytes" not in pod["memory"]  # unset by the runtime: left out
    assert pod["network"]["name"] == "eth0" and pod["network"]["rxBytes"] == 10
    [c] = pod["containers"]
    assert c["name"] == "app" and c["startTime"] == "2026-01-01T00:00:01Z"
    assert c["rootfs"]["usedBytes"] == 12 and c["memory"]["workingSetBytes"] == 4096


class Lister:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    async def list(self, **_: Any) -> list[Any]:
        return self.items


@run_async
async def test_metrics_text() -> None:
    metrics = KubeletMetrics(
        node_name="n1",
        sandboxes=Lister([pb.PodSandbox(state=pb.SANDBOX_READY),
                          pb.PodSandbox(state=pb.SANDBOX_NOTREADY)]),
        containers=Lister([pb.Container(state=pb.CONTAINER_RUNNING),
                           pb.Container(state=pb.CONTAINER_RUNNING),
                           pb.Container(state=pb.CONTAINER_EXITED)]))
    metrics.observe_request("GET", "/pods", long_running=False)
    metrics.observe_request("GET", "/containerLogs/ns/p/c", long_running=True)
    metrics.observe_request("GET", "/pods", long_running=False)
    text = await metrics.text()
    assert 'kubelet_node_name{node="n1"} 1\n' in text
    assert "# TYPE kubelet_running_pods gauge\nkubelet_running_pods 1\n" in text
    assert 'kubelet_running_containers{container_state="running"} 2\n' in text
    assert 'kubelet_running_containers{container_state="exited"} 1\n' in text
    assert ('kubelet_http_requests_total{long_running="false",method="GET",path="pods",'
            'server_type="readwrite"} 2\n') in text
    assert 'path="containerLogs"' in text
    rss = next(ln for ln in text.splitlines() if ln.startswith("process_resident_memory_bytes"))
    assert int(rss.split()[1]) > 10 * 1024 * 1024
    assert text.endswith("\n")


@run_async
async def test_runtime_operation_metrics() -> None:
    from kubelet_py.cri_client.timing import CallStats, operation_type
    assert operation_type("RunPodSandbox") == "run_podsandbox"
    assert operation_type("PodSandboxStatus") == "podsandbox_status"
    assert operation_type("ListContainers") == "list_containers"
    stats = CallStats()
    stats.observe("RunPodSandbox", 0.3, error=False)
    stats.observe("RunPodSandbox", 2.0, error=True)
    stats.observe("ListContainers", 0.001, error=False)
    stats.observe("ListContainers", 1000.0, error=False)  # beyond the last bucket
    text = await KubeletMetrics(node_name="n", sandboxes=Lister([]), containers=Lister([]),
                                operations=stats).text()
    assert 'kubelet_runtime_operations_total{operation_type="run_podsandbox"} 2\n' in text
    assert 'kubelet_runtime_operations_errors_total{operation_type="run_podsandbox"} 1\n' \
        in text
    assert "# TYPE kubelet_runtime_operations_duration_seconds histogram\n" in text
    bucket = "kubelet_runtime_operations_duration_seconds_bucket"
    assert f'{bucket}{{operation_type="run_podsandbox",le="0.005"}} 0\n' in text
    assert f'{bucket}{{operation_type="run_podsandbox",le="0.488281"}} 1\n' in text
    assert f'{bucket}{{operation_type="run_podsandbox",le="+Inf"}} 2\n' in text
    assert f'{bucket}{{operation_type="list_containers",le="0.005"}} 1\n' in text
    assert ('kubelet_runtime_operations_duration_seconds_sum{operation_type="run_podsandbox"}'
            " 2.3\n") in text


def test_render_escapes_and_paths() -> None:
    from kubelet_py.server.metrics import Family, Sample
    out = render([Family("x", "gauge", "h", (Sample("x", 1.5, (("a", 'q"\\\n'),)),))])
    assert out == '# HELP x h\n# TYPE x gauge\nx{a="q\\"\\\\\\n"} 1.5\n'
    assert request_path("/stats/summary") == "stats" and request_path("/") == "/"


def container_stats(name: str, attempt: int, cpu: int, mem: int) -> pb.ContainerStats:
    labels = {"io.kubernetes.pod.name": "web", "io.kubernetes.pod.namespace": "ns",
              "io.kubernetes.pod.uid": "u1", "io.kubernetes.container.name": name}
    return pb.ContainerStats(
        attributes=pb.ContainerAttributes(id=f"{name}{attempt}", labels=labels,
                                          metadata=pb.ContainerMetadata(name=name,
                                                                        attempt=attempt)),
        cpu=pb.CpuUsage(timestamp=1, usage_core_nano_seconds=u64(cpu)),
        memory=pb.MemoryUsage(timestamp=1, working_set_bytes=u64(mem)))


class NoSandboxStats(Runtime):
    async def sandboxes(self) -> list[pb.PodSandboxStats]:
        from kubelet_py.errors import RuntimeUnavailable
        raise RuntimeUnavailable("CRI ListPodSandboxStats: UNKNOWN: cgroupPath is empty")

    async def containers(self) -> list[pb.ContainerStats]:
        return [container_stats("app", 0, 100, 10), container_stats("app", 1, 5, 1),
                container_stats("side", 0, 7, 3),
                pb.ContainerStats(attributes=pb.ContainerAttributes(id="foreign"))]


@run_async
async def test_summary_from_container_stats(tmp_path: Path) -> None:
    clock = ManualClock()
    provider = SummaryProvider(node_name="n1", runtime=NoSandboxStats(), pods=Pods(),
                               host=HostStats(clock=clock, proc=fake_proc(tmp_path / "proc")),
                               root_dir=tmp_path, clock=clock)
    [pod] = (await provider.summary())["pods"]
    assert pod["podRef"] == {"name": "web", "namespace": "ns", "uid": "u1"}
    assert pod["cpu"]["usageCoreNanoSeconds"] == 12  # newest app attempt + side
    assert "usageNanoCores" not in pod["cpu"]
    assert pod["memory"]["workingSetBytes"] == 4
    assert sorted(c["name"] for c in pod["containers"]) == ["app", "side"]
