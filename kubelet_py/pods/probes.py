"""Container probes: startup, liveness, readiness (exec, httpGet, tcpSocket).

One asyncio task per probe of a running container. Results: `ready` and `started` per
container ID (read by the status code); a liveness or startup failure past its threshold
stops the container, and the planner restarts it per restartPolicy.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp

from kubelet_py.pods.model import Pod, PodRuntime, State

log = logging.getLogger(__name__)
Obj = dict[str, Any]
KINDS = ("startupProbe", "livenessProbe", "readinessProbe")


@dataclasses.dataclass(frozen=True)
class ProbeSpec:
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def of(cls, probe: Obj) -> ProbeSpec:
        return cls(initial_delay=float(probe.get("initialDelaySeconds", 0)),
                   period=float(probe.get("periodSeconds", 10)),
                   timeout=float(probe.get("timeoutSeconds", 1)),
                   success_threshold=int(probe.get("successThreshold", 1)),
                   failure_threshold=int(probe.get("failureThreshold", 3)))


@dataclasses.dataclass
class Tally:
    """Consecutive outcomes against the thresholds (pure)."""

    spec: ProbeSpec
    successes: int = 0
    failures: int = 0
    result: bool | None = None

    def record(self, ok: bool) -> bool:
        """Count one outcome; True when the thresholded result changed."""
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            new = True if self.successes >= self.spec.success_threshold else self.result
        else:
            self.failures, self.successes = self.failures + 1, 0
            new = False if self.failures >= self.spec.failure_threshold else self.result
        changed = new != self.result
        self.result = new
        return changed


class Runner(Protocol):
    async def exec(self, container_id: str, cmd: list[str], timeout: int) -> int: ...


async def run_probe(probe: Obj, *, container_id: str, pod_ip: str, runner: Runner,
                    timeout: float) -> bool:
    """One probe attempt: True on success."""
    try:
        if "exec" in probe:
            code = await runner.exec(container_id, list(probe["exec"].get("command") or []),
                                     max(1, int(timeout)))
            return code == 0
        if "httpGet" in probe:
            get = probe["httpGet"]
            url = (f"{get.get('scheme', 'HTTP').lower()}://{get.get('host') or pod_ip}:"
                   f"{get['port']}{get.get('path', '/')}")
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            async with aiohttp.ClientSession() as session, session.get(
                    url, headers=headers, ssl=False,
                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return 200 <= resp.status < 400
        if "tcpSocket" in probe:
            tcp = probe["tcpSocket"]
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(tcp.get("host") or pod_ip, int(tcp["port"])), timeout)
            writer.close()
            return True
    except (OSError, TimeoutError, aiohttp.ClientError, ValueError):
        return False
    log.warning("probe kind %s is not supported", sorted(probe))
    return False


class ProbeManager:
    def __init__(self, runner: Runner, *, on_change: Callable[[], None],
                 kill: Callable[[str, str], Awaitable[None]]) -> None:
        self._runner = runner
        self._on_change = on_change
        self._kill = kill
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.ready: dict[str, bool] = {}
        self.started: dict[str, bool] = {}

    def sync(self, pod: Pod, runtime: PodRuntime) -> None:
        """Probe every running container that has probes; drop probes of the others."""
        specs = {c["name"]: c for c in [*(pod["spec"].get("initContainers") or []),
                                        *(pod["spec"].get("containers") or [])]}
        sandbox = runtime.sandbox
        pod_ip = sandbox.ips[0] if sandbox is not None and sandbox.ips else "127.0.0.1"
        wanted: set[tuple[str, str]] = set()
        for c in runtime.containers:
            if c.state != State.RUNNING or c.name not in specs:
                continue
            for kind in KINDS:
                probe = specs[c.name].get(kind)
                if probe:
                    wanted.add((c.id, kind))
                    if (c.id, kind) not in self._tasks:
                        self._tasks[(c.id, kind)] = asyncio.ensure_future(
                            self._guarded(kind, probe, c.id, c.name, pod_ip))
        for key in set(self._tasks) - wanted:
            self._tasks.pop(key).cancel()
            self.ready.pop(key[0], None)
            self.started.pop(key[0], None)

    def has(self, container_id: str, kind: str) -> bool:
        return (container_id, kind) in self._tasks

    def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    async def _guarded(self, kind: str, probe: Obj, cid: str, name: str, pod_ip: str) -> None:
        try:
            await self._loop(kind, probe, cid, name, pod_ip)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("container %s (%s): %s loop failed", name, cid, kind)

    async def _loop(self, kind: str, probe: Obj, cid: str, name: str, pod_ip: str) -> None:
        spec = ProbeSpec.of(probe)
        tally = Tally(spec)
        await asyncio.sleep(spec.initial_delay)
        while True:
            if kind != "startupProbe" and self.has(cid, "startupProbe") and \
                    not self.started.get(cid):
                await asyncio.sleep(spec.period)  # others wait for the startup probe
                continue
            ok = await run_probe(probe, container_id=cid, pod_ip=pod_ip,
                                 runner=self._runner, timeout=spec.timeout)
            if tally.record(ok):
                if kind == "readinessProbe":
                    self.ready[cid] = bool(tally.result)
                    self._on_change()
                elif kind == "startupProbe" and tally.result:
                    self.started[cid] = True
                    self._on_change()
            if tally.result is False and kind in ("livenessProbe", "startupProbe"):
                log.info("container %s (%s): %s failed %d times; restarting", name, cid, kind,
                         tally.failures)
                await self._kill(cid, f"{kind} failed")
                return
            if kind == "startupProbe" and tally.result:
                return
            await asyncio.sleep(spec.period)
