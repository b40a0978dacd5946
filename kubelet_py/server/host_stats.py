"""The node's own usage for /stats/summary: CPU and processes from /proc/stat and
/proc/loadavg, memory from /proc/meminfo, the kubelet's filesystem from statvfs."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from kubelet_py.clock import Clock

USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (not idle, iowait)


@dataclasses.dataclass(frozen=True)
class CpuSample:
    at: float
    usage_core_nano_seconds: int
    usage_nano_cores: int | None


@dataclasses.dataclass(frozen=True)
class MemorySample:
    total: int
    available: int
    free: int
    page_faults: int
    major_page_faults: int


@dataclasses.dataclass(frozen=True)
class FsSample:
    capacity: int
    available: int
    used: int
    inodes: int
    inodes_free: int


@dataclasses.dataclass(frozen=True)
class ProcSample:
    running: int
    max_pid: int


def cpu_nanoseconds(stat: str) -> int:
    """Busy CPU time of all cores since boot, in nanoseconds, from /proc/stat."""
    for line in stat.splitlines():
        if line.startswith("cpu "):
            values = [int(x) for x in line.split()[1:]]
            busy = sum(values[i] for i in BUSY_FIELDS if i < len(values))
            return busy * 1_000_000_000 // USER_HZ
    raise ValueError("no aggregate cpu line in /proc/stat")


def boot_time(stat: str) -> int:
    for line in stat.splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise ValueError("no btime in /proc/stat")


def memory(meminfo: str, vmstat: str) -> MemorySample:
    kib = {}
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            kib[name] = int(parts[0]) * 1024
    counters = dict(line.split() for line in vmstat.splitlines() if len(line.split()) == 2)
    return MemorySample(total=kib["MemTotal"], available=kib.get("MemAvailable", kib["MemFree"]),
                        free=kib["MemFree"], page_faults=int(counters.get("pgfault", 0)),
                        major_page_faults=int(counters.get("pgmajfault", 0)))


def filesystem(path: Path) -> FsSample:
    st = os.statvfs(path)
    capacity = st.f_blocks * st.f_frsize
    return FsSample(capacity=capacity, available=st.f_bavail * st.f_frsize,
                    used=(st.f_blocks - st.f_bfree) * st.f_frsize, inodes=st.f_files,
                    inodes_free=st.f_ffree)


class HostStats:
    """Samples the host; CPU nano-cores come from the previous sample (None on the first)."""

    def __init__(self, *, clock: Clock, proc: Path = Path("/proc")) -> None:
        self._clock = clock
        self._proc = proc
        self._last: CpuSample | None = None

    def _read(self, name: str) -> str:
        return (self._proc / name).read_text()

    def boot_time(self) -> int:
        return boot_time(self._read("stat"))

    def cpu(self) -> CpuSample:
        now = self._clock.monotonic()
        used = cpu_nanoseconds(self._read("stat"))
        rate = None
        if self._last is not None and now > self._last.at:
            rate = int((used - self._last.usage_core_nano_seconds) / (now - self._last.at))
        if self._last is None or now - self._last.at >= 1.0:
            self._last = CpuSample(at=now, usage_core_nano_seconds=used, usage_nano_cores=rate)
        return CpuSample(at=now, usage_core_nano_seconds=used, usage_nano_cores=rate)

    def memory(self) -> MemorySample:
        return memory(self._read("meminfo"), self._read("vmstat"))

    def processes(self) -> ProcSample:
        running = int(self._read("loadavg").split()[3].split("/")[1])
        return ProcSample(running=running,
                          max_pid=int(self._read("sys/kernel/pid_max").strip()))
