from __future__ import annotations

from bench.kubelet.pod_latency import _OP, operations_delta


def test_metric_lines_parse() -> None:
    line = 'kubelet_runtime_operations_duration_seconds_sum{operation_type="run_podsandbox"} 12.5'
    match = _OP.match(line)
    assert match is not None and match.groups() == ("sum", "run_podsandbox", "12.5")
    assert _OP.match('kubelet_runtime_operations_total{operation_type="x"} 3') is None


def test_operations_delta_sorts_by_time_spent() -> None:
    before = {"list_containers": (10, 1.0), "version": (1, 0.1)}
    after = {"list_containers": (30, 5.0), "version": (1, 0.1), "run_podsandbox": (4, 8.0)}
    delta = operations_delta(before, after)
    assert list(delta) == ["run_podsandbox", "list_containers"]  # version made no new calls
    assert delta["list_containers"] == {"calls": 20, "total_s": 4.0, "mean_ms": 200.0}
