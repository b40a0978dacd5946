"""Per-operation counts, errors and latencies of CRI calls, for the upstream kubelet's
`kubelet_runtime_operations_*` metrics (and for finding where pod startup time goes)."""
from __future__ import annotations

import dataclasses
import re

BUCKETS = tuple(round(0.005 * 2.5 ** i, 6) for i in range(14))
"""Upper bounds in seconds: upstream's exponential buckets (5 ms x 2.5, 14 of them)."""


def operation_type(method: str) -> str:
    """`RunPodSandbox` -> `run_podsandbox`, `ListContainers` -> `list_containers`."""
    name = method.replace("PodSandbox", "Podsandbox")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclasses.dataclass
class OperationStats:
    count: int = 0
    errors: int = 0
    seconds: float = 0.0
    buckets: list[int] = dataclasses.field(default_factory=lambda: [0] * len(BUCKETS))
    """Non-cumulative counts per bucket; what exceeds the last bound counts only in +Inf."""

    def cumulative(self) -> list[int]:
        out, running = [], 0
        for n in self.buckets:
            running += n
            out.append(running)
        return out


class CallStats:
    def __init__(self) -> None:
        self._ops: dict[str, OperationStats] = {}

    def observe(self, method: str, seconds: float, *, error: bool) -> None:
        op = self._ops.setdefault(operation_type(method), OperationStats())
        op.count += 1
        op.errors += error
        op.seconds += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                op.buckets[i] += 1
                break

    def operations(self) -> dict[str, OperationStats]:
        return dict(sorted(self._ops.items()))
