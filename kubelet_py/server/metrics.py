"""`/metrics`: a few kubelet metrics in the Prometheus text format (0.0.4), named as the
upstream kubelet names them; runtime counts are read through the CRI at scrape time."""
from __future__ import annotations

import collections
import dataclasses
import os
import resource
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from cri.api import runtime_pb2 as pb
from kubelet_py.cri_client.timing import BUCKETS, CallStats
from kubelet_py.pods.model import State

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STATES = {pb.CONTAINER_CREATED: State.CREATED, pb.CONTAINER_RUNNING: State.RUNNING,
           pb.CONTAINER_EXITED: State.EXITED, pb.CONTAINER_UNKNOWN: State.UNKNOWN}


class SandboxLister(Protocol):
    async def list(self, *, labels: dict[str, str] | None = None) -> list[pb.PodSandbox]: ...


class ContainerLister(Protocol):
    async def list(self, *, sandbox_id: str = "",
                   labels: dict[str, str] | None = None) -> list[pb.Container]: ...


@dataclasses.dataclass(frozen=True)
class Sample:
    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    kind: str  # gauge | counter | histogram
    help: str
    samples: tuple[Sample, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(families: Iterable[Family]) -> str:
    lines = []
    for f in families:
        lines.append(f"# HELP {f.name} {f.help}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for s in f.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in s.labels)
            lines.append(f"{s.name}{{{labels}}} {_number(s.value)}" if labels
                         else f"{s.name} {_number(s.value)}")
    return "\n".join(lines) + "\n"


def request_path(path: str) -> str:
    """The `path` label: the first segment only, so pod names do not explode the series."""
    return path.strip("/").split("/", 1)[0] or "/"


class KubeletMetrics:
    def __init__(self, *, node_name: str, sandboxes: SandboxLister,
                 containers: ContainerLister, operations: CallStats | None = None) -> None:
        self._node = node_name
        self._operations = operations
        self._sandboxes = sandboxes
        self._containers = containers
        self._requests: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._start = _process_start()

    def observe_request(self, method: str, path: str, *, long_running: bool) -> None:
        self._requests[(method, request_path(path), "true" if long_running else "false")] += 1

    async def families(self) -> list[Family]:
        sandboxes = await self._sandboxes.list()
        containers = await self._containers.list()
        states = collections.Counter(_STATES.get(c.state, State.UNKNOWN).value
                                     for c in containers)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return [
            Family("kubelet_node_name", "gauge", "The node's name. The count is always 1.",
                   (Sample("kubelet_node_name", 1, (("node", self._node),)),)),
            Family("kubelet_running_pods", "gauge",
                   "Number of pods that have a running pod sandbox",
                   (Sample("kubelet_running_pods",
                           sum(1 for s in sandboxes if s.state == pb.SANDBOX_READY)),)),
            Family("kubelet_running_containers", "gauge",
                   "Number of containers currently running",
                   tuple(Sample("kubelet_running_containers", states.get(st.value, 0),
                                (("container_state", st.value),)) for st in State)),
            Family("kubelet_http_requests_total", "counter",
                   "Number of the http requests received since the server started",
                   tuple(Sample("kubelet_http_requests_total", n,
                                (("long_running", lr), ("method", m), ("path", p),
                                 ("server_type", "readwrite")))
                         for (m, p, lr), n in sorted(self._requests.items()))),
            *runtime_operations(self._operations or CallStats()),
            Family("process_cpu_seconds_total", "counter",
                   "Total user and system CPU time spent in seconds.",
                   (Sample("process_cpu_seconds_total", usage.ru_utime + usage.ru_stime),)),
            Family("process_resident_memory_bytes", "gauge",
                   "Resident memory size in bytes.",
                   (Sample("process_resident_memory_bytes", _rss()),)),
            Family("process_start_time_seconds", "gauge",
                   "Start time of the process since unix epoch in seconds.",
                   (Sample("process_start_time_seconds", self._start),)),
        ]

    async def text(self) -> str:
        return render(await self.families())


def runtime_operations(stats: CallStats) -> list[Family]:
    """Upstream's kubelet_runtime_operations_{total,errors_total,duration_seconds}."""
    ops = stats.operations()
    histogram: list[Sample] = []
    for op, st in ops.items():
        label = ("operation_type", op)
        for bound, n in zip(BUCKETS, st.cumulative(), strict=True):
            histogram.append(Sample("kubelet_runtime_operations_duration_seconds_bucket", n,
                                    (label, ("le", _number(bound)))))
        histogram += [Sample("kubelet_runtime_operations_duration_seconds_bucket", st.count,
                             (label, ("le", "+Inf"))),
                      Sample("kubelet_runtime_operations_duration_seconds_sum", st.seconds,
                             (label,)),
                      Sample("kubelet_runtime_operations_duration_seconds_count", st.count,
                             (label,))]
    return [
        Family("kubelet_runtime_operations_total", "counter",
               "Cumulative number of runtime operations by operation type.",
               tuple(Sample("kubelet_runtime_operations_total", st.count,
                            (("operation_type", op),)) for op, st in ops.items())),
        Family("kubelet_runtime_operations_errors_total", "counter",
               "Cumulative number of runtime operation errors by operation type.",
               tuple(Sample("kubelet_runtime_operations_errors_total", st.errors,
                            (("operation_type", op),)) for op, st in ops.items())),
        Family("kubelet_runtime_operations_duration_seconds", "histogram",
               "Duration in seconds of runtime operations. Broken down by operation type.",
               tuple(histogram)),
    ]


def _rss() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _process_start() -> float:
    """From /proc/self/stat's starttime (clock ticks after boot) and the boot time."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[19])
    boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    started = boot + ticks / os.sysconf("SC_CLK_TCK")
    return round(started, 2) if started <= time.time() else time.time()
