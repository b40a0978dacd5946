"""The CNI agent in the CNI benchmark: its process, and what a shim costs over a bare
interpreter start (see bench/cni/run.py)."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.report import Series, record
from engine.networkdriver.plugins import agent, install

COMMAND = "make bench-cni"


class AgentProcess:
    """The CNI agent as its own process on ``python`` (the executables' interpreter)."""

    def __init__(self, sock: Path, python: str) -> None:
        agent.prepare_dir(sock.parent)
        self.sock = str(sock)
        code = (f"import sys; sys.path[:0] = [{str(install.SOURCE_ROOT)!r}]\n"
                "from engine.networkdriver.plugins.agent import main\nmain()")
        self.proc = subprocess.Popen([python, "-IS", "-c", code, "--socket", self.sock,
                                      "--idle-timeout", "86400"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the CNI agent did not start (exit {self.proc.poll()})")
            time.sleep(0.01)

    def status(self, *, settle: bool = False) -> dict[str, Any]:
        return agent.query_status(self.sock, settle=settle)

    def cpu_ms(self) -> float:
        """The agent's CPU so far, once its reaper is idle (its deferred deletions done)."""
        return float(self.status(settle=True)["cpu_s"]) * 1000

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def child_cpu_ms(argv: list[str], env: dict[str, str]) -> float:
    """CPU of one run of ``argv`` (user + system, from the children's rusage)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000


def record_shim_start(agent_bin: Path, served_by: AgentProcess, *, python: str,
                      runs: int) -> None:
    """What a shim costs over a bare interpreter start (the goal: within ~1 ms), and what
    the agent spends per request (VERSION: no plugin work), interleaved."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": "VERSION"}
    bare, shim_cpu, agent_cpu = [], [], []
    for _ in range(runs):
        bare.append(child_cpu_ms([python, "-IS", "-c", "pass"], env))
        before = served_by.cpu_ms()
        shim_cpu.append(child_cpu_ms([str(agent_bin / "kpy-bridge")], env))
        agent_cpu.append(served_by.cpu_ms() - before)
    series = [Series(f"{python} -IS -c pass (CPU)", tuple(bare), "ms"),
              Series("kpy-bridge VERSION via the agent: the shim (CPU)", tuple(shim_cpu), "ms"),
              Series("the agent's CPU per VERSION (+ one status query)", tuple(agent_cpu),
                     "ms")]
    record(name="cni-shim-start", title="CNI shim start against a bare Python start",
           command=COMMAND, series=series,
           ratios={"shim CPU p50 - bare start CPU p50 (ms)": series[1].p50 - series[0].p50},
           notes="Interleaved runs; CPU from the children's rusage (the shim) and from the"
                 " agent's getrusage (asked over its socket: the agent's figure includes"
                 f" answering that query). Load average at the end {os.getloadavg()[0]:.1f}"
                 f" on {os.cpu_count()} cores.")
    for s in series:
        print(f"shim      {s.label:52s} p50 {s.p50:6.2f} ms  p99 {s.p99:6.2f} ms")
