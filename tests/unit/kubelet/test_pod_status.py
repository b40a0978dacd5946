from __future__ import annotations

from typing import Any

from kubelet_py.pods.model import PodRuntime, RuntimeSandbox, State
from kubelet_py.pods.planner import Waiting
from kubelet_py.pods.qos import qos_class
from kubelet_py.pods.status import StatusInputs, compute_pod_status, status_changed

from .test_planner import SB, at, c, pod, rt

INPUTS = StatusInputs(runtime_name="containerd", host_ips=("127.0.0.1",))
SB_IP = RuntimeSandbox(id="sb1", attempt=0, ready=True, created_at=at(0), ips=("10.88.0.5",))


def conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_pending_without_sandbox() -> None:
    s = compute_pod_status(pod("web"), PodRuntime(), INPUTS, at(0))
    assert s["phase"] == "Pending"
    assert s["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert conds(s)["PodReadyToStartContainers"]["status"] == "False"
    assert conds(s)["Ready"]["reason"] == "ContainersNotReady"
    assert conds(s)["Ready"]["message"] == "containers with unready status: [web]"
    assert s["startTime"] == "2026-01-01T00:00:00Z"
    assert s["hostIPs"] == [{"ip": "127.0.0.1"}] and s["hostIP"] == "127.0.0.1"
    assert s["qosClass"] == "BestEffort"


def test_running_and_ready() -> None:
    state = PodRuntime(sandboxes=(SB_IP,), containers=(c("web", State.RUNNING, started=2),))
    s = compute_pod_status(pod("web"), state, INPUTS, at(3))
    assert s["phase"] == "Running"
    assert s["podIP"] == "10.88.0.5" and s["podIPs"] == [{"ip": "10.88.0.5"}]
    cs = s["containerStatuses"][0]
    assert cs["state"] == {"running": {"startedAt": "2026-01-01T00:00:02Z"}}
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["containerID"] == "containerd://web-0-sb1"
    assert all(v["status"] == "True" for v in conds(s).values())


def test_crash_loop_status_has_last_state_and_restart_count() -> None:
    state = rt(c("web", State.EXITED, code=0, finished=2),
               c("web", State.EXITED, attempt=1, code=1, started=3, finished=4))
    waiting = {"web": Waiting("CrashLoopBackOff", "back-off 10s restarting failed container=web")}
    s = compute_pod_status(pod("web"), state, StatusInputs("containerd", (), waiting), at(5))
    cs = s["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["restartCount"] == 1
    assert s["phase"] == "Running"  # restartPolicy Always: still running, restarting


def test_job_succeeded_and_failed() -> None:
    ok = compute_pod_status(pod("job", policy="Never"),
                            rt(c("job", State.EXITED, code=0, finished=3)), INPUTS, at(4))
    assert ok["phase"] == "Succeeded"
    assert ok["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert conds(ok)["Ready"]["reason"] == "PodCompleted"
    bad = compute_pod_status(pod("job", policy="Never"),
                             rt(c("job", State.EXITED, code=2, finished=3)), INPUTS, at(4))
    assert bad["phase"] == "Failed"
    retry = compute_pod_status(pod("job", policy="OnFailure"),
                               rt(c("job", State.EXITED, code=2, finished=3)), INPUTS, at(4))
    assert retry["phase"] == "Running"


def test_terminal_phase_is_sticky() -> None:
    p = pod("job", policy="Never")
    p["status"] = {"phase": "Succeeded"}
    assert compute_pod_status(p, PodRuntime(), INPUTS, at(9))["phase"] == "Succeeded"


def test_init_progress() -> None:
    p = pod("web", inits=("i1", "i2"))
    s = compute_pod_status(p, rt(c("i1", State.EXITED, finished=2), c("i2", State.RUNNING)),
                           INPUTS, at(3))
    assert s["phase"] == "Pending"
    assert conds(s)["Initialized"]["message"] == "containers with incomplete status: [i2]"
    assert s["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert s["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    failed = compute_pod_status(pod("web", inits=("i1",), policy="Never"),
                                rt(c("i1", State.EXITED, code=1, finished=2)), INPUTS, at(3))
    assert failed["phase"] == "Failed"


def test_image_pull_waiting_reason() -> None:
    waiting = {"web": Waiting("ImagePullBackOff", "Back-off pulling image \"nope\"")}
    s = compute_pod_status(pod("web"), rt(), StatusInputs("containerd", (), waiting), at(1))
    assert s["containerStatuses"][0]["state"]["waiting"] == {
        "reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope\""}


def test_transition_times_and_change_detection() -> None:
    p = pod("web")
    state = rt(c("web", State.RUNNING))
    first = compute_pod_status(p, state, INPUTS, at(2))
    p["status"] = first
    again = compute_pod_status(p, state, INPUTS, at(60))
    assert not status_changed(first, again)
    assert conds(again)["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:02Z"
    # The API server writes nulls and empty strings we leave out: still "unchanged".
    served = {**first, "conditions": [{**x, "lastProbeTime": None} for x in first["conditions"]],
              "containerStatuses": [{**first["containerStatuses"][0], "imageID": ""}]}
    assert not status_changed(served, again)
    stopped = compute_pod_status(p, rt(c("web", State.EXITED, code=1, finished=70)), INPUTS,
                                 at(71))
    assert status_changed(first, stopped)
    assert conds(stopped)["Ready"]["lastTransitionTime"] == "2026-01-01T00:01:11Z"


def test_qos_classes() -> None:
    def with_res(**res: Any) -> dict[str, Any]:
        p = pod("a")
        p["spec"]["containers"][0]["resources"] = res
        return p

    assert qos_class(pod("a")) == "BestEffort"
    assert qos_class(with_res(limits={"cpu": "1", "memory": "1Gi"})) == "Guaranteed"
    assert qos_class(with_res(requests={"cpu": "1"})) == "Burstable"
    assert qos_class(with_res(limits={"cpu": "1", "memory": "1Gi"},
                              requests={"cpu": "500m"})) == "Burstable"


def test_sidecar_counts_for_readiness() -> None:
    p = pod("web", sidecars=("proxy",))
    s = compute_pod_status(p, rt(c("proxy", State.EXITED, code=1, finished=4),
                                 c("web", State.RUNNING)), INPUTS, at(5))
    assert conds(s)["ContainersReady"]["status"] == "False"
    assert conds(s)["Initialized"]["status"] == "True"  # the app containers already started
    assert SB.ready
