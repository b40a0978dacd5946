"""What every runtime verb is given: options, the store, cgroups, network, a clock."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from engine.cgroups.base import CgroupManager
from engine.errors import InvalidArgument
from engine.networkdriver.base import NetworkDriver
from engine.runtime.store import Store

# runtime handler name -> (exec driver, binary)
HANDLERS = {"native": ("native", ""), "runc": ("runc", "runc"), "crun": ("runc", "crun")}
PODS_PER_MONITOR = 8  # 0.6 MiB PSS per pod at 110 pods (docs/benchmarks.md); see monitor.py


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    run_root: Path
    default_handler: str = "native"
    cgroup_root: str = "kubelet-py"
    create_timeout: float = 60.0
    # pods whose monitors share one process (engine.shim.monitor: memory against blast
    # radius); 1 = a monitor process per pod
    pods_per_monitor: int = PODS_PER_MONITOR


@dataclasses.dataclass
class Ctx:
    options: RuntimeOptions
    store: Store
    cgroups: CgroupManager
    network: NetworkDriver | None
    clock: Callable[[], int] = time.time_ns

    def handler(self, name: str) -> tuple[str, str]:
        chosen = name or self.options.default_handler
        if chosen not in HANDLERS:
            raise InvalidArgument(f"unknown runtime handler {chosen!r} "
                                  f"(known: {', '.join(sorted(HANDLERS))})")
        return HANDLERS[chosen]
