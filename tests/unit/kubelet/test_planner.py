from __future__ import annotations

import datetime as dt
from typing import Any

from kubelet_py.pods.backoff import BackoffEntry
from kubelet_py.pods.model import PodRuntime, RuntimeContainer, RuntimeSandbox, State
from kubelet_py.pods.planner import StartFailure, Waiting, compute_pod_actions

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def pod(*apps: str, inits: tuple[str, ...] = (), sidecars: tuple[str, ...] = (),
        policy: str = "Always") -> dict[str, Any]:
    init_specs = [{"name": n, "image": "busybox", "restartPolicy": "Always"} for n in sidecars]
    init_specs += [{"name": n, "image": "busybox"} for n in inits]
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "initContainers": init_specs,
                     "containers": [{"name": n, "image": "busybox"} for n in apps]}}


SB = RuntimeSandbox(id="sb1", attempt=0, ready=True, created_at=T0)


def c(name: str, state: State, *, attempt: int = 0, code: int = 0, sandbox: str = "sb1",
      started: float = 1, finished: float | None = None) -> RuntimeContainer:
    return RuntimeContainer(
        id=f"{name}-{attempt}-{sandbox}", name=name, attempt=attempt, state=state,
        sandbox_id=sandbox, created_at=at(started - 0.5), started_at=at(started),
        finished_at=at(finished) if finished is not None else None, exit_code=code)


def rt(*containers: RuntimeContainer, sandboxes: tuple[RuntimeSandbox, ...] = (SB,)
       ) -> PodRuntime:
    return PodRuntime(sandboxes=sandboxes, containers=containers)


def test_new_pod_creates_sandbox_and_starts_all_apps() -> None:
    a = compute_pod_actions(pod("web", "log"), PodRuntime(), T0)
    assert a.create_sandbox and not a.kill_pod
    assert a.sandbox_attempt == 0
    assert a.start == ("web", "log")
    assert a.attempts == {"web": 0, "log": 0}


def test_new_pod_with_init_starts_only_first_init() -> None:
    a = compute_pod_actions(pod("web", inits=("i1", "i2")), PodRuntime(), T0)
    assert a.create_sandbox and a.start == ("i1",)


def test_dead_sandbox_is_recreated_and_everything_killed() -> None:
    dead = RuntimeSandbox(id="sb1", attempt=2, ready=False, created_at=T0)
    a = compute_pod_actions(pod("web"), rt(c("web", State.RUNNING, attempt=4),
                                           sandboxes=(dead,)), at(100))
    assert a.kill_pod and a.create_sandbox
    assert a.sandbox_attempt == 3
    assert a.attempts == {"web": 5}  # the restart count keeps counting


def test_newest_sandbox_wins() -> None:
    old = RuntimeSandbox(id="old", attempt=0, ready=False, created_at=T0)
    new = RuntimeSandbox(id="new", attempt=1, ready=True, created_at=at(10))
    a = compute_pod_actions(pod("web"), rt(c("web", State.RUNNING, sandbox="new"),
                                           sandboxes=(old, new)), at(20))
    assert not a.create_sandbox and a.sandbox_id == "new" and a.start == ()


def test_never_pod_with_dead_sandbox_is_done_not_recreated() -> None:
    dead = RuntimeSandbox(id="sb1", attempt=0, ready=False, created_at=T0)
    a = compute_pod_actions(pod("job", policy="Never"),
                            rt(c("job", State.EXITED, finished=5), sandboxes=(dead,)), at(10))
    assert a.done and not a.create_sandbox


def test_init_containers_run_in_order() -> None:
    p = pod("web", inits=("i1", "i2"))
    a = compute_pod_actions(p, rt(c("i1", State.RUNNING)), at(2))
    assert a.start == ()  # wait for i1
    a = compute_pod_actions(p, rt(c("i1", State.EXITED, finished=3)), at(4))
    assert a.start == ("i2",)
    a = compute_pod_actions(p, rt(c("i1", State.EXITED, finished=3),
                                  c("i2", State.EXITED, finished=5)), at(6))
    assert a.start == ("web",)


def test_failed_init_restarts_then_backs_off_even_when_policy_always() -> None:
    p = pod("web", inits=("i1",))
    failed = rt(c("i1", State.EXITED, code=1, finished=3))
    a = compute_pod_actions(p, failed, at(4))
    assert a.start == ("i1",) and a.attempts == {"i1": 1}
    assert a.backoff["i1"] == BackoffEntry(delay=10.0, at=at(4))
    again = rt(c("i1", State.EXITED, code=1, finished=3),
               c("i1", State.EXITED, attempt=1, code=1, started=5, finished=6))
    a = compute_pod_actions(p, again, at(7), backoff={"i1": BackoffEntry(10.0, at(4))})
    assert a.start == ()
    assert a.waiting["i1"].reason == "CrashLoopBackOff"
    assert a.requeue_after == 9.0


def test_failed_init_with_policy_never_fails_pod() -> None:
    a = compute_pod_actions(pod("web", inits=("i1",), policy="Never"),
                            rt(c("i1", State.EXITED, code=2, finished=3)), at(4))
    assert a.done and a.kill_pod and a.start == ()


def test_sidecar_starts_and_gates_following_init_until_running() -> None:
    p = pod("web", inits=("i1",), sidecars=("proxy",))
    assert compute_pod_actions(p, rt(), at(1)).start == ("proxy",)
    a = compute_pod_actions(p, rt(c("proxy", State.CREATED)), at(1))
    assert a.start == ("proxy",) and a.remove == ("proxy-0-sb1",)
    assert a.attempts == {"proxy": 1}
    a = compute_pod_actions(p, rt(c("proxy", State.RUNNING)), at(2))
    assert a.start == ("i1",)
    a = compute_pod_actions(p, rt(c("proxy", State.RUNNING),
                                  c("i1", State.EXITED, finished=3)), at(4))
    assert a.start == ("web",)


def test_sidecar_restarts_after_initialization_without_blocking_apps() -> None:
    p = pod("web", "log", sidecars=("proxy",), policy="Never")
    state = rt(c("proxy", State.EXITED, code=137, finished=8), c("web", State.RUNNING))
    a = compute_pod_actions(p, state, at(9))
    assert a.start == ("proxy", "log")


def test_sidecars_stopped_when_apps_done() -> None:
    p = pod("job", sidecars=("proxy",), policy="OnFailure")
    a = compute_pod_actions(p, rt(c("proxy", State.RUNNING),
                                  c("job", State.EXITED, code=0, finished=9)), at(10))
    assert a.done and a.kill_pod


def test_restart_policies() -> None:
    ok = rt(c("app", State.EXITED, code=0, finished=5))
    bad = rt(c("app", State.EXITED, code=3, finished=5))
    assert compute_pod_actions(pod("app"), ok, at(6)).start == ("app",)
    assert compute_pod_actions(pod("app", policy="OnFailure"), ok, at(6)).done
    assert compute_pod_actions(pod("app", policy="OnFailure"), bad, at(6)).start == ("app",)
    assert compute_pod_actions(pod("app", policy="Never"), bad, at(6)).done


def test_crash_loop_backoff_doubles_to_five_minutes() -> None:
    p = pod("app")
    entry: BackoffEntry | None = None
    now = 0.0
    delays = []
    for attempt in range(9):
        state = rt(c("app", State.EXITED, attempt=attempt, code=1, started=now,
                     finished=now + 1))
        now += 1
        backoff = {"app": entry} if entry else {}
        a = compute_pod_actions(p, state, at(now), backoff=backoff)
        if entry is not None:
            assert a.start == () and a.waiting["app"].reason == "CrashLoopBackOff"
            assert a.requeue_after == entry.delay
            now += entry.delay
            a = compute_pod_actions(p, state, at(now), backoff=backoff)
        assert a.start == ("app",) and a.attempts == {"app": attempt + 1}
        entry = a.backoff["app"]
        delays.append(entry.delay)
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300, 300]


def test_backoff_reset_after_ten_minutes_running() -> None:
    p = pod("app")
    entry = BackoffEntry(delay=300.0, at=at(0))
    state = rt(c("app", State.EXITED, attempt=7, code=1, started=1, finished=601))
    a = compute_pod_actions(p, state, at(602), backoff={"app": entry})
    assert a.start == ("app",)
    assert a.backoff["app"].delay == 10.0


def test_image_pull_failure_backs_off_with_reason() -> None:
    p = pod("app")
    failure = StartFailure("ErrImagePull", "manifest unknown", at(1))
    entry = BackoffEntry(delay=10.0, at=at(1))
    a = compute_pod_actions(p, rt(), at(3), backoff={"app": entry}, failures={"app": failure})
    assert a.start == ()
    assert a.waiting["app"] == Waiting("ImagePullBackOff", "manifest unknown")
    assert a.requeue_after == 8.0
    a = compute_pod_actions(p, rt(), at(12), backoff={"app": entry}, failures={"app": failure})
    assert a.start == ("app",) and a.attempts == {"app": 0}


def test_create_config_error_keeps_its_reason() -> None:
    failure = StartFailure("CreateContainerConfigError", "secret \"s\" not found", at(1))
    a = compute_pod_actions(pod("app"), rt(), at(2), backoff={"app": BackoffEntry(10, at(1))},
                            failures={"app": failure})
    assert a.waiting["app"].reason == "CreateContainerConfigError"


def test_running_pod_needs_nothing() -> None:
    a = compute_pod_actions(pod("a", "b"), rt(c("a", State.RUNNING), c("b", State.RUNNING)),
                            at(5))
    assert a == type(a)(sandbox_id="sb1")


def test_containers_of_old_sandbox_do_not_count_as_done_inits() -> None:
    old = RuntimeSandbox(id="old", attempt=0, ready=False, created_at=T0)
    new = RuntimeSandbox(id="new", attempt=1, ready=True, created_at=at(10))
    state = rt(c("i1", State.EXITED, sandbox="old", finished=2), sandboxes=(old, new))
    a = compute_pod_actions(pod("web", inits=("i1",)), state, at(11))
    assert a.start == ("i1",) and a.attempts == {"i1": 1}


def _hashed(name: str, image: str, *, attempt: int = 0) -> RuntimeContainer:
    import dataclasses

    from kubelet_py.pods.model import container_hash
    return dataclasses.replace(c(name, State.RUNNING, attempt=attempt),
                               hash=container_hash({"name": name, "image": image}))


def test_changed_image_kills_and_restarts_whatever_the_policy() -> None:
    for policy in ("Always", "OnFailure", "Never"):
        p = pod("web", "log", policy=policy)
        p["spec"]["containers"][0]["image"] = "busybox:new"
        running = rt(_hashed("web", "busybox", attempt=2), _hashed("log", "busybox"))
        a = compute_pod_actions(p, running, at(50))
        assert a.kill == {"web-2-sb1": "Container web definition changed, will be restarted"}
        assert a.start == ("web",) and a.attempts == {"web": 3}
        assert not a.backoff and not a.kill_pod and not a.create_sandbox


def test_unchanged_or_unknown_hash_leaves_containers_alone() -> None:
    a = compute_pod_actions(pod("web"), rt(_hashed("web", "busybox")), at(5))
    assert not a.kill and not a.start
    # A container made without our hash annotation (another tool's) is not restarted.
    a = compute_pod_actions(pod("web"), rt(c("web", State.RUNNING)), at(5))
    assert not a.kill and not a.start


def test_changed_sidecar_is_restarted_too() -> None:
    p = pod("web", sidecars=("proxy",))
    p["spec"]["initContainers"][0]["image"] = "envoy:2"
    a = compute_pod_actions(p, rt(_hashed("proxy", "busybox"), _hashed("web", "busybox")),
                            at(5))
    assert a.kill == {"proxy-0-sb1": "Container proxy definition changed, will be restarted"}
    assert a.start == ("proxy",)
