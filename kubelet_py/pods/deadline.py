"""`spec.activeDeadlineSeconds`: how long a pod may be active on the node (pure).

Counted from the pod's startTime; once it has passed, the pod's containers are stopped and
the pod fails with reason DeadlineExceeded, as the upstream kubelet does."""
from __future__ import annotations

import datetime as dt

from kubelet_py.pods.model import Pod

REASON = "DeadlineExceeded"
MESSAGE = "Pod was active on the node longer than the specified deadline"


def _start(pod: Pod, first_seen: dt.datetime) -> dt.datetime:
    text = (pod.get("status") or {}).get("startTime")
    if not text:
        return first_seen
    try:
        return dt.datetime.fromisoformat(str(text))
    except ValueError:
        return first_seen


def seconds_left(pod: Pod, now: dt.datetime, *, first_seen: dt.datetime) -> float | None:
    """Seconds until the deadline (<= 0: passed); None when the pod has none."""
    limit = (pod.get("spec") or {}).get("activeDeadlineSeconds")
    if limit is None:
        return None
    return float(limit) - (now - _start(pod, first_seen)).total_seconds()
