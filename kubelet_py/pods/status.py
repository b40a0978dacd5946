"""PodStatus from the pod, the runtime's view and the worker's waiting reasons (pure)."""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from kubelet_py.clock import rfc3339
from kubelet_py.pods.model import Pod, PodRuntime, RuntimeContainer, State, restartable
from kubelet_py.pods.planner import Waiting
from kubelet_py.pods.qos import qos_class

Obj = dict[str, Any]
TERMINAL = ("Succeeded", "Failed")


@dataclasses.dataclass(frozen=True)
class StatusInputs:
    runtime_name: str
    """The CRI runtime's name, the scheme of containerIDs (`containerd://...`)."""
    host_ips: tuple[str, ...]
    waiting: Mapping[str, Waiting] = dataclasses.field(default_factory=dict)
    ready: Mapping[str, bool] = dataclasses.field(default_factory=dict)
    """Readiness probe results by container ID (containers without the probe are ready)."""
    started: Mapping[str, bool] = dataclasses.field(default_factory=dict)
    """Startup probe successes by container ID (containers without the probe started)."""
    failed: tuple[str, str] | None = None
    """(reason, message) of a pod the kubelet failed as a whole (an expired deadline)."""


def _t(when: dt.datetime | None) -> str | None:
    return rfc3339(when) if when is not None else None


def _clean(obj: Obj) -> Obj:
    """Drop empty strings and Nones: the API server omits them, and we compare with it."""
    return {k: (_clean(v) if isinstance(v, dict) else v) for k, v in obj.items()
            if v is not None and v != ""}


def _terminated(c: RuntimeContainer, runtime_name: str) -> Obj:
    reason = c.reason or ("Completed" if c.exit_code == 0 else "Error")
    return {"terminated": _clean({
        "exitCode": c.exit_code, "reason": reason, "message": c.message,
        "startedAt": _t(c.started_at), "finishedAt": _t(c.finished_at),
        "containerID": f"{runtime_name}://{c.id}"})}


def container_status(spec: Obj, runtime: PodRuntime, inputs: StatusInputs, *,
                     default_waiting: str) -> Obj:
    name = spec["name"]
    c = runtime.latest(name)
    waiting = inputs.waiting.get(name)
    out: Obj = {"name": name, "image": spec.get("image", ""), "imageID": "",
                "ready": False, "started": False, "restartCount": 0, "lastState": {}}
    if c is None:
        w = waiting or Waiting(default_waiting)
        out["state"] = {"waiting": _clean({"reason": w.reason, "message": w.message})}
        return _clean(out)
    out.update(restartCount=c.attempt, imageID=c.image_ref,
               containerID=f"{inputs.runtime_name}://{c.id}")
    previous = runtime.previous(name)
    if previous is not None and previous.state == State.EXITED:
        out["lastState"] = _terminated(previous, inputs.runtime_name)
    if c.state == State.RUNNING:
        out["state"] = {"running": {"startedAt": _t(c.started_at)}}
        started = not spec.get("startupProbe") or inputs.started.get(c.id, False)
        out["started"] = started
        out["ready"] = started and (not spec.get("readinessProbe") or
                                    inputs.ready.get(c.id, False))
    elif c.state == State.EXITED and waiting is not None:
        out["state"] = {"waiting": _clean({"reason": waiting.reason,
                                           "message": waiting.message})}
        out["lastState"] = _terminated(c, inputs.runtime_name)
    elif c.state == State.EXITED:
        out["state"] = _terminated(c, inputs.runtime_name)
    else:
        out["state"] = {"waiting": {"reason": waiting.reason if waiting else "ContainerCreating"}}
    return _clean(out)


def _condition(kind: str, ok: bool, old: Mapping[str, Obj], now: dt.datetime, *,
               reason: str = "", message: str = "") -> Obj:
    status = "True" if ok else "False"
    previous = old.get(kind)
    since = previous.get("lastTransitionTime") if previous and \
        previous.get("status") == status else None
    return _clean({"type": kind, "status": status, "lastProbeTime": None,
                   "lastTransitionTime": since or rfc3339(now),
                   "reason": "" if ok else reason, "message": "" if ok else message})


def _phase(pod: Pod, runtime: PodRuntime, initialized: bool, init_failed: bool,
           policy: str) -> str:
    previous = (pod.get("status") or {}).get("phase")
    if previous in TERMINAL:
        return str(previous)
    if init_failed:
        return "Failed"
    if not initialized:
        return "Pending"
    running = stopped = succeeded = waiting = 0
    for spec in pod["spec"].get("containers") or []:
        c = runtime.latest(spec["name"])
        if c is None or c.state in (State.CREATED, State.UNKNOWN):
            waiting += 1
        elif c.state == State.RUNNING:
            running += 1
        else:
            stopped += 1
            succeeded += c.exit_code == 0
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if policy == "Never" else "Running"


def compute_pod_status(pod: Pod, runtime: PodRuntime, inputs: StatusInputs,
                       now: dt.datetime) -> Obj:
    spec: Obj = pod.get("spec") or {}
    old: Obj = pod.get("status") or {}
    policy = spec.get("restartPolicy", "Always")
    sandbox = runtime.sandbox
    view = runtime.in_sandbox(sandbox.id) if sandbox is not None else runtime
    inits: list[Obj] = spec.get("initContainers") or []
    apps: list[Obj] = spec.get("containers") or []

    incomplete = []
    init_failed = False
    for init in inits:
        c = view.latest(init["name"])
        if restartable(init):
            done = c is not None and c.state == State.RUNNING
        else:
            done = c is not None and c.state == State.EXITED and c.exit_code == 0
            init_failed |= (c is not None and c.state == State.EXITED and c.exit_code != 0
                            and policy == "Never")
        if not done:
            incomplete.append(init["name"])
    apps_seen = any(view.latest(a["name"]) is not None for a in apps)
    initialized = not incomplete or apps_seen
    phase = "Failed" if inputs.failed else _phase(pod, view, initialized, init_failed,
                                                   policy)

    init_statuses = [container_status(i, view, inputs, default_waiting="PodInitializing")
                     for i in inits]
    app_statuses = [container_status(
        a, view, inputs, default_waiting="ContainerCreating" if initialized
        else "PodInitializing") for a in apps]
    sidecars_ready = all(s.get("ready") for i, s in zip(inits, init_statuses, strict=True)
                         if restartable(i))
    unready = [s["name"] for s in app_statuses if not s.get("ready")]
    containers_ready = not unready and sidecars_ready
    finished = phase in TERMINAL
    not_ready_reason = "PodCompleted" if finished else "ContainersNotReady"
    not_ready_msg = "" if finished else f"containers with unready status: [{' '.join(unready)}]"
    previous = {c["type"]: c for c in old.get("conditions") or []}
    sandbox_ready = sandbox is not None and sandbox.ready and not finished
    conditions = [
        _condition("PodReadyToStartContainers", sandbox_ready, previous, now),
        _condition("Initialized", initialized, previous, now,
                   reason="ContainersNotInitialized",
                   message=f"containers with incomplete status: [{' '.join(incomplete)}]"),
        _condition("Ready", containers_ready and not finished, previous, now,
                   reason=not_ready_reason, message=not_ready_msg),
        _condition("ContainersReady", containers_ready and not finished, previous, now,
                   reason=not_ready_reason, message=not_ready_msg),
        previous.get("PodScheduled") or _condition("PodScheduled", True, previous, now),
    ]
    status: Obj = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": inputs.host_ips[0] if inputs.host_ips else None,
        "hostIPs": [{"ip": ip} for ip in inputs.host_ips] or None,
        "startTime": old.get("startTime") or rfc3339(now),
        "containerStatuses": app_statuses,
        "qosClass": old.get("qosClass") or qos_class(pod),
    }
    if inputs.failed:
        status["reason"], status["message"] = inputs.failed
    if inits:
        status["initContainerStatuses"] = init_statuses
    ips = sandbox.ips if sandbox is not None else ()
    if ips:
        status["podIP"] = ips[0]
        status["podIPs"] = [{"ip": ip} for ip in ips]
    elif old.get("podIP"):
        status["podIP"], status["podIPs"] = old["podIP"], old.get("podIPs")
    return _clean(status)


def _norm(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items() if v is not None and v != ""}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def status_changed(old: Obj, new: Obj) -> bool:
    """Whether `new` says anything `old` does not (only the fields the kubelet sets).

    Empty strings and nulls count as absent: the API server omits some and writes others."""
    return any(_norm(old.get(k)) != _norm(v) for k, v in new.items())
