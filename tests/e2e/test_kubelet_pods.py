"""Pods through kubelet-py against the real control plane, on two CRI runtimes: containerd
and our own engine (engined), with the same tests: the kubelet is runtime-agnostic."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import queue
import random
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from kubelet_py.cri_client import open_cri
from tests.e2e.test_kubelet_join import Kubelet, free_port, wait
from tests.harness.cluster import ControlPlane
from tests.harness.containerd import Containerd, cni_conflist, containerd  # noqa: F401
from tests.harness.engined import Engined
from tests.harness.prereq import need_tool
from tests.harness.registry import LocalRegistry, local_registry  # noqa: F401

pytestmark = pytest.mark.e2e
BUSYBOX = "docker.io/library/busybox:1.36"
STATIC = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "static-web"},
          "spec": {"containers": [{"name": "web", "image": BUSYBOX,
                                   "command": ["sh", "-c", "sleep 3600"]}]}}


@dataclasses.dataclass(frozen=True)
class Runtime:
    name: str
    endpoint: str
    subnet: str


@pytest.fixture(scope="session")
def engined(local_registry: LocalRegistry,  # noqa: F811
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """A private engined: own root, socket, CNI bridge and subnet; the local registry only."""
    tools = need_tool("bridge").parent
    root = tmp_path_factory.mktemp("engined")
    bridge = f"kpy{secrets.token_hex(3)}"
    subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
    conflist = cni_conflist(bridge=bridge, subnet=subnet)
    with Engined.create(root, registry_hosts=local_registry.root / "mirrors.yaml",
                        conflist=conflist, cni_bin_dirs=[tools], graph_driver="vfs") as daemon:
        yield Runtime("engined", daemon.endpoint, subnet)


@pytest.fixture(scope="module", params=["containerd", "engined"])
def runtime(request: pytest.FixtureRequest) -> Runtime:
    if request.param == "containerd":
        c: Containerd = request.getfixturevalue("containerd")
        return Runtime("containerd", c.endpoint, c.subnet)
    engine: Runtime = request.getfixturevalue("engined")
    return engine


class Node:
    def __init__(self, cluster: ControlPlane, runtime: Runtime, root: Path,
                 extra: tuple[str, ...] = ()) -> None:
        self.extra = extra
        self.cluster = cluster
        self.runtime = runtime
        self.name = f"kubelet-py-pods-{secrets.token_hex(3)}"
        self.namespace = f"kpy-{secrets.token_hex(3)}"
        self.root = root
        self.port = free_port()
        self.manifests = root / "manifests"
        self.manifests.mkdir()
        (self.manifests / "static.yaml").write_text(json.dumps(STATIC))
        self.kubelet = Kubelet(root, self.name, [
            "join", "--server", cluster.server, "--token", cluster.token,
            "--discovery-token-ca-cert-hash", cluster.ca_cert_hash, *self.flags()])

    def flags(self) -> list[str]:
        return ["--root-dir", str(self.root), "--hostname-override", self.name,
                "--port", str(self.port), "--healthz-port", "0", "--address", "127.0.0.1",
                "--node-ip", "127.0.0.1", "--pod-logs-dir", str(self.root / "logs"),
                "--pod-manifest-path", str(self.manifests),
                "--container-runtime-endpoint", self.runtime.endpoint, "-v", "4", *self.extra]

    def restart(self) -> None:
        """Stop kubelet-py and start it again from the kubeconfig `join` wrote."""
        self.kubelet.stop()
        self.kubelet = Kubelet(self.root, self.name, [
            "--kubeconfig", str(self.root / "kubeconfig"), *self.flags()])

    def get(self, *args: str) -> Any:
        done = self.cluster.kubectl("get", *args, "-o", "json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def pod(self, name: str) -> Any:
        return self.get("pod", "-n", self.namespace, name)

    def create_pod(self, name: str, containers: list[dict[str, Any]], **spec: Any) -> None:
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"nodeName": self.name, "terminationGracePeriodSeconds": 5,
                         "containers": containers, **spec}}
        self.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))


@pytest.fixture(scope="module")
def node(control_plane: ControlPlane, runtime: Runtime,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with joined_node(control_plane, runtime, tmp_path_factory.mktemp("kubelet")) as n:
        yield n


@contextlib.contextmanager
def joined_node(control_plane: ControlPlane, runtime: Runtime, root: Path) -> Iterator[Node]:
    """A kubelet-py joined to the cluster, Ready, with a namespace of its own; removed after."""
    n = Node(control_plane, runtime, root)
    try:
        control_plane.kubectl("create", "namespace", n.namespace)
        wait(lambda: n.get("serviceaccount", "-n", n.namespace, "default"),
             "default service account", timeout=60)
        ready = wait(lambda: _ready(n.get("node", n.name)), "node Ready", timeout=60)
        print(f"\n[{runtime.name}] node Ready {time.monotonic() - n.kubelet.started:.2f}s "
              f"after join started ({ready})")
        yield n
    finally:
        control_plane.kubectl("delete", "namespace", n.namespace, "--wait=false", check=False)
        n.kubelet.stop()
        control_plane.kubectl("delete", "node", n.name, "--wait=false", check=False)
        print(n.kubelet.output()[-4000:])


def info_scheme(node: Node) -> str:
    return node.get("node", node.name)["status"]["nodeInfo"]["containerRuntimeVersion"] \
        .split("://", 1)[0] + "://"


def _ready(node: Any) -> str | None:
    if not node:
        return None
    conds = {c["type"]: c for c in node.get("status", {}).get("conditions", [])}
    ready = conds.get("Ready", {})
    return ready.get("lastTransitionTime") if ready.get("status") == "True" else None


def _state(pod: Any, index: int = 0) -> dict[str, Any]:
    statuses = (pod or {}).get("status", {}).get("containerStatuses") or [{}]
    return statuses[index] if index < len(statuses) else {}


def test_node_ready_with_runtime_version(node: Node) -> None:
    status = node.get("node", node.name)["status"]
    expected = "kubelet-py://" if node.runtime.name == "engined" else "containerd://"
    assert status["nodeInfo"]["containerRuntimeVersion"].startswith(expected)
    # The runtime's handlers as its CRI Status reports them, the default one ("") among them.
    handlers = {h["name"]: h["features"] for h in status["runtimeHandlers"]}
    assert "" in handlers
    assert handlers == asyncio.run(_cri_handlers(node.runtime.endpoint))


async def _cri_handlers(endpoint: str) -> dict[str, dict[str, bool]]:
    cri = open_cri(endpoint)
    try:
        response = await cri.info.status()
    finally:
        await cri.close()
    return {h.name: {"recursiveReadOnlyMounts": h.features.recursive_read_only_mounts,
                     "userNamespaces": h.features.user_namespaces}
            for h in response.runtime_handlers}


def test_busybox_pod_runs_with_ip_and_token_volume(node: Node) -> None:
    started = time.monotonic()
    node.create_pod("web", [{"name": "web", "image": BUSYBOX,
                             "command": ["sh", "-c", "echo hello from $POD; sleep 3600"],
                             "env": [{"name": "POD", "valueFrom": {
                                 "fieldRef": {"fieldPath": "metadata.name"}}}]}])
    pod = wait(lambda: (p := node.pod("web")) and p["status"].get("phase") == "Running"
               and p, "pod Running", timeout=60)
    print(f"\n[{node.runtime.name}] pod Running {time.monotonic() - started:.2f}s after create")
    assert pod["status"]["podIP"].startswith(node.runtime.subnet.rsplit(".", 2)[0])
    assert pod["status"]["hostIP"] == "127.0.0.1"
    assert pod["status"]["qosClass"] == "BestEffort"
    conds = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conds == {"PodReadyToStartContainers": "True", "Initialized": "True",
                     "Ready": "True", "ContainersReady": "True", "PodScheduled": "True"}
    cs = _state(pod)
    assert cs["ready"] and "running" in cs["state"]
    assert cs["containerID"].startswith(info_scheme(node))
    assert cs["imageID"]
    volumes = [v["name"] for v in pod["spec"].get("volumes", [])]
    assert any(v.startswith("kube-api-access-") for v in volumes)
    logs = next((node.kubelet.root / "logs").glob(f"{node.namespace}_web_*/web/0.log"))
    wait(lambda: "hello from web" in logs.read_text(), "container log line", timeout=60)


def test_crash_loop_backoff(node: Node) -> None:
    node.create_pod("crash", [{"name": "crash", "image": BUSYBOX,
                               "command": ["sh", "-c", "echo crashing; exit 3"]}])
    pod = wait(lambda: (p := node.pod("crash")) and _state(p).get("state", {}).get(
        "waiting", {}).get("reason") == "CrashLoopBackOff" and p, "CrashLoopBackOff",
               timeout=60)
    cs = _state(pod)
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    first = cs["restartCount"]
    assert first >= 1
    later = wait(lambda: _state(node.pod("crash")).get("restartCount", 0) > first and
                 node.pod("crash"), "another restart", timeout=45)
    assert "back-off" in json.dumps(_state(later)) or _state(later)["restartCount"] > first


def test_job_pod_succeeds(node: Node) -> None:
    node.create_pod("job", [{"name": "job", "image": BUSYBOX,
                             "command": ["sh", "-c", "echo done"]}], restartPolicy="Never")
    pod = wait(lambda: (p := node.pod("job")) and p["status"].get("phase") == "Succeeded"
               and p, "pod Succeeded", timeout=60)
    term = _state(pod)["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert {c["type"]: c.get("reason") for c in pod["status"]["conditions"]}[
        "Ready"] == "PodCompleted"


def _pump(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def test_missing_image_pull_backoff(node: Node, local_registry: LocalRegistry) -> None:  # noqa: F811
    image = f"{local_registry.host}/kubelet-py/does-not-exist:{secrets.token_hex(3)}"
    # Watch every status the kubelet writes: the first failure, then the back-off. From a
    # resourceVersion taken before the pod exists, so that the API server replays whatever
    # happened before the watch was up (kubectl takes a while to start on a busy machine).
    since = node.cluster.kubectl("get", "pods", "-n", node.namespace, "-o",
                                 "jsonpath={.metadata.resourceVersion}").stdout.strip()
    node.create_pod("missing", [{"name": "missing", "image": image}])
    argv = [str(node.cluster.tools / "kubectl"), f"--kubeconfig={node.cluster.kubeconfig}",
            "get", "--raw", f"/api/v1/namespaces/{node.namespace}/pods?watch=1&"
            f"resourceVersion={since}&fieldSelector=metadata.name%3Dmissing"]
    watch = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert watch.stdout is not None
    # A reader thread, so that a watch that goes quiet cannot hold the test past its deadline.
    threading.Thread(target=_pump, args=(watch.stdout, lines), daemon=True).start()
    try:
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while "ImagePullBackOff" not in seen and (left := deadline - time.monotonic()) > 0:
            try:
                event = json.loads(lines.get(timeout=left))
            except queue.Empty:
                break
            reason = _state(event["object"]).get("state", {}).get("waiting", {}).get("reason")
            if reason and (not seen or seen[-1] != reason):
                seen.append(reason)
    finally:
        watch.kill()
        watch.wait()
    assert "ErrImagePull" in seen and "ImagePullBackOff" in seen, seen
    assert seen.index("ErrImagePull") < seen.index("ImagePullBackOff")
    # the kubelet posts events on their own, not before the status that follows them
    wait(lambda: any("ErrImagePull" in e["message"] for e in _events(node, "missing")),
         "an event naming ErrImagePull", timeout=60)


def test_graceful_delete(node: Node) -> None:
    node.create_pod("grace", [{"name": "grace", "image": BUSYBOX,
                               "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}])
    wait(lambda: (p := node.pod("grace")) and p["status"].get("phase") == "Running",
         "pod Running", timeout=60)
    uid = node.pod("grace")["metadata"]["uid"]
    started = time.monotonic()
    node.cluster.kubectl("delete", "pod", "-n", node.namespace, "grace", "--wait=false",
                         "--grace-period=5")
    wait(lambda: node.pod("grace") is None, "pod removed", timeout=60)
    took = time.monotonic() - started
    print(f"\ngraceful delete took {took:.2f}s (grace 5s, trap exits at once)")
    assert took < 8
    tools = node.cluster.tools
    ps = subprocess.run([str(tools / "crictl"), "--runtime-endpoint", node.runtime.endpoint,
                         "pods", "--label", f"io.kubernetes.pod.uid={uid}", "-q"],
                        capture_output=True, text=True, check=True)
    assert ps.stdout.strip() == ""


def test_static_pod_has_a_running_mirror(node: Node) -> None:
    name = f"static-web-{node.name}"
    mirror = wait(lambda: (p := node.get("pod", "-n", "default", name)) and
                  p.get("status", {}).get("phase") == "Running" and p, "mirror pod Running",
                  timeout=60)
    notes = mirror["metadata"]["annotations"]
    assert notes["kubernetes.io/config.source"] == "file"
    assert notes["kubernetes.io/config.mirror"] == notes["kubernetes.io/config.hash"]
    assert mirror["spec"]["nodeName"] == node.name
    assert _state(mirror)["ready"]


def test_kubelet_restart_changes_nothing_in_running_pods(node: Node) -> None:
    node.create_pod("steady", [{"name": "steady", "image": BUSYBOX,
                                "command": ["sh", "-c", "sleep 3600"]}])
    before = wait(lambda: (p := node.pod("steady")) and p["status"].get("phase") == "Running"
                  and p, "pod Running", timeout=60)
    node.restart()
    lease = node.get("lease", "-n", "kube-node-lease", node.name)["spec"]["renewTime"]
    wait(lambda: node.get("lease", "-n", "kube-node-lease", node.name)["spec"]["renewTime"]
         != lease, "lease renewed by the restarted kubelet", timeout=30)
    time.sleep(3)
    after = node.pod("steady")
    assert _state(after)["containerID"] == _state(before)["containerID"]
    assert _state(after)["restartCount"] == _state(before)["restartCount"]
    assert after["status"]["podIP"] == before["status"]["podIP"]
    assert after["status"]["startTime"] == before["status"]["startTime"]
    assert _ready(node.get("node", node.name))


def test_kubectl_logs(node: Node) -> None:
    node.create_pod("talker", [{"name": "talker", "image": BUSYBOX, "command": [
        "sh", "-c", "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.2; done"]}])
    wait(lambda: (p := node.pod("talker")) and p["status"].get("phase") == "Running",
         "pod Running", timeout=60)
    kubectl = node.cluster.kubectl
    wait(lambda: "line 3" in kubectl("logs", "-n", node.namespace, "talker").stdout,
         "three lines logged", timeout=60)
    tail = kubectl("logs", "-n", node.namespace, "talker", "--tail=2").stdout.splitlines()
    assert len(tail) == 2 and all(t.startswith("line ") for t in tail)
    stamped = kubectl("logs", "-n", node.namespace, "talker", "--tail=1",
                      "--timestamps").stdout.split(" ", 1)
    assert stamped[0].startswith("20") and stamped[0].endswith("Z")
    assert kubectl("logs", "-n", node.namespace, "talker", "--since=1h").stdout
    proc = subprocess.Popen(
        [str(node.cluster.tools / "kubectl"), f"--kubeconfig={node.cluster.kubeconfig}",
         "logs", "-f", "-n", node.namespace, "talker", "--tail=1"],
        stdout=subprocess.PIPE, text=True)
    streamed: list[str] = []

    def read() -> None:
        for line in proc.stdout or ():
            streamed.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:  # until five lines came (a line per 0.2 s; kubectl's start may take a while)
        deadline = time.monotonic() + 60
        while sum(x.startswith("line ") for x in list(streamed)) < 5 and \
                time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(10)
    out = "".join(streamed)
    numbers = [int(x.split()[1]) for x in out.splitlines() if x.startswith("line ")]
    assert len(numbers) >= 5, out  # new lines kept streaming
    assert numbers == sorted(numbers)
    previous = kubectl("logs", "-n", node.namespace, "crash", "--previous").stdout
    assert "crashing" in previous


def test_kubelet_api_authn_and_authz(node: Node) -> None:
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    url = f"https://127.0.0.1:{node.port}/pods"
    with pytest.raises(urllib.error.HTTPError) as anon:
        urllib.request.urlopen(url, context=ctx, timeout=10)
    assert anon.value.code == 401
    token = node.cluster.kubectl("create", "token", "default", "-n", node.namespace).stdout
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token.strip()}"})
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(req, context=ctx, timeout=10)
    assert denied.value.code == 403
    # The API server's kubelet client certificate (verified against the cluster CA, then
    # authorized with a SubjectAccessReview) gets 200.
    layout = node.cluster.layout
    ctx.load_cert_chain(str(layout.cert("apiserver-kubelet-client")),
                        str(layout.key("apiserver-kubelet-client")))
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
        names = {p["metadata"]["name"] for p in json.loads(resp.read())["items"]}
    assert "web" in names


def test_log_rotation_past_10_mib(node: Node) -> None:
    node.create_pod("chatty", [{"name": "chatty", "image": BUSYBOX, "command": [
        "sh", "-c", "head -c 11000000 /dev/zero | tr '\\0' a | fold -w 1000; "
                    "until [ -e /tmp/rotated ]; do sleep 0.1; done; "
                    "echo after-rotation; sleep 3600"]}])
    wait(lambda: (p := node.pod("chatty")) and p["status"].get("phase") == "Running",
         "pod Running", timeout=60)
    logs = node.root / "logs"
    rotated = wait(lambda: next(logs.glob(f"{node.namespace}_chatty_*/chatty/0.log.*"), None),
                   "a rotated log file", timeout=45)
    assert rotated.stat().st_size > 10 * 1024 * 1024
    # The runtime makes a new 0.log when the kubelet has it reopen the log: only then may the
    # container write again (told through a file, rather than by sleeping long enough).
    current = rotated.with_name("0.log")
    wait(current.exists, "the log reopened by the runtime", timeout=60)
    node.cluster.kubectl("exec", "-n", node.namespace, "chatty", "--", "touch", "/tmp/rotated")
    wait(lambda: "after-rotation" in node.cluster.kubectl(
        "logs", "-n", node.namespace, "chatty", "--tail=1").stdout,
         "a line written after the runtime reopened the log", timeout=45)
    assert current.stat().st_size < 1024 * 1024
    # --tail reaches back into the rotated file for what the live one lacks. `fold` ends
    # its output without a newline, so the runtime logged the last 1000 a's as a partial
    # line (in the rotated file) that "after-rotation" (in the live one) completes.
    tail = node.cluster.kubectl("logs", "-n", node.namespace, "chatty",
                                "--tail=2").stdout.splitlines()
    assert tail == ["a" * 1000, "a" * 1000 + "after-rotation"]


def _events(node: Node, name: str) -> list[dict[str, Any]]:
    return list(node.get("events", "-n", node.namespace, "--field-selector",
                         f"involvedObject.name={name}")["items"])


def test_unsupported_volume_is_a_precise_reason(node: Node) -> None:
    node.create_pod("nfs", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"],
                             "volumeMounts": [{"name": "share", "mountPath": "/share"}]}],
                    volumes=[{"name": "share", "nfs": {"server": "127.0.0.1", "path": "/x"}}])
    state = wait(lambda: _state(node.pod("nfs")).get("state", {}).get("waiting"),
                 "a waiting reason", timeout=60)
    wait(lambda: _state(node.pod("nfs")).get("state", {}).get("waiting", {}).get("reason")
         == "CreateContainerConfigError", "CreateContainerConfigError", timeout=60)
    message = _state(node.pod("nfs"))["state"]["waiting"]["message"]
    assert "type nfs is not supported" in message, state
    wait(lambda: any("nfs is not supported" in e["message"] for e in _events(node, "nfs")),
         "an event naming the problem", timeout=60)


def test_unknown_runtime_handler(node: Node) -> None:
    rc = f"kpy-{secrets.token_hex(3)}"
    node.cluster.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": rc}, "handler": "no-such-handler"}))
    try:
        node.create_pod("rc", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}],
                        runtimeClassName=rc)
        wait(lambda: any(e["reason"] == "FailedCreatePodSandBox" for e in _events(node, "rc")),
             "FailedCreatePodSandBox event", timeout=60)
        # the event and the status are posted apart, in no fixed order
        wait(lambda: _state(node.pod("rc")).get("state", {}).get("waiting", {}).get("reason")
             == "ContainerCreating", "the ContainerCreating status", timeout=60)
        # The worker is alive and the node keeps serving other pods.
        assert node.pod("web")["status"]["phase"] == "Running"
    finally:
        node.cluster.kubectl("delete", "pod", "-n", node.namespace, "rc", "--wait=false",
                             check=False)
        node.cluster.kubectl("delete", "runtimeclass", rc, "--wait=false", check=False)


def test_deployment_of_three_httpd_becomes_available(node: Node) -> None:
    """Through the scheduler (a nodeSelector keeps it on this node): 3 replicas Available."""
    labels = {"app": "httpd"}
    node.cluster.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "httpd", "namespace": node.namespace},
        "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "nodeSelector": {"kubernetes.io/hostname": node.name},
                     "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "httpd", "image": BUSYBOX,
                                     "command": ["httpd", "-f", "-p", "8080"],
                                     "ports": [{"containerPort": 8080}]}]}}}}))
    started = time.monotonic()
    wait(lambda: (d := node.get("deployment", "-n", node.namespace, "httpd")) and
         d.get("status", {}).get("availableReplicas") == 3, "3 available replicas",
         timeout=90)
    print(f"\n[{node.runtime.name}] deployment of 3 Available in "
          f"{time.monotonic() - started:.2f}s")
    pods = node.get("pods", "-n", node.namespace, "-l", "app=httpd")["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {node.name}
    assert len({p["status"]["podIP"] for p in pods}) == 3


def test_job_completes(node: Node) -> None:
    node.cluster.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "once", "namespace": node.namespace},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "nodeSelector": {"kubernetes.io/hostname": node.name},
            "restartPolicy": "Never",
            "containers": [{"name": "once", "image": BUSYBOX,
                            "command": ["sh", "-c", "echo job done"]}]}}}}))
    wait(lambda: (j := node.get("job", "-n", node.namespace, "once")) and
         j.get("status", {}).get("succeeded") == 1, "job succeeded", timeout=90)
    pods = node.get("pods", "-n", node.namespace, "-l", "job-name=once")["items"]
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]


def test_readiness_and_liveness_probes(node: Node) -> None:
    node.create_pod("probed", [
        {"name": "slow", "image": BUSYBOX,
         "command": ["sh", "-c", "sleep 3; touch /tmp/ready; sleep 3600"],
         "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]},
                            "periodSeconds": 1}},
        {"name": "sick", "image": BUSYBOX, "command": ["sleep", "3600"],
         "livenessProbe": {"exec": {"command": ["test", "-f", "/tmp/never"]},
                           "periodSeconds": 1, "failureThreshold": 2}}])
    wait(lambda: (p := node.pod("probed")) and p["status"].get("phase") == "Running",
         "pod Running", timeout=60)
    first = _state(node.pod("probed"), 0)
    assert first.get("ready") is False or first.get("state", {}).get("running")
    wait(lambda: _state(node.pod("probed"), 0).get("ready") is True, "readiness", timeout=60)
    wait(lambda: _state(node.pod("probed"), 1).get("restartCount", 0) >= 1,
         "a liveness restart", timeout=60)
    wait(lambda: any(e["reason"] == "Unhealthy" for e in _events(node, "probed")),
         "an Unhealthy event", timeout=60)  # events are posted apart from the status


def _shell_pod(node: Node) -> None:
    """A busybox httpd serving one known page on 8081 (exec and port-forward target)."""
    if node.pod("shell") is None:
        node.create_pod("shell", [{"name": "shell", "image": BUSYBOX, "command": [
            "sh", "-c", "mkdir -p /www && echo hello-pf > /www/index.html && "
                        "exec httpd -f -p 8081 -h /www"]}])
    wait(lambda: (p := node.pod("shell")) and p["status"].get("phase") == "Running",
         "pod Running", timeout=60)


def test_kubectl_exec(node: Node) -> None:
    """Through the apiserver to the kubelet's /exec, proxied to the runtime's stream."""
    _shell_pod(node)
    kubectl = node.cluster.kubectl
    ns = node.namespace
    assert kubectl("exec", "-n", ns, "shell", "--", "echo", "hi").stdout == "hi\n"
    failed = kubectl("exec", "-n", ns, "shell", "--", "sh", "-c", "echo out; echo err >&2; "
                     "exit 3", check=False)
    assert failed.returncode == 3, failed.stderr
    assert failed.stdout == "out\n" and "err" in failed.stderr
    piped = kubectl("exec", "-i", "-n", ns, "shell", "--", "sh", "-c", "tr a-z A-Z",
                    stdin="piped through stdin\n")
    assert piped.stdout == "PIPED THROUGH STDIN\n"
    missing = kubectl("exec", "-n", ns, "shell", "-c", "nope", "--", "true", check=False)
    assert missing.returncode != 0 and "nope" in missing.stderr


def test_kubectl_port_forward(node: Node) -> None:
    import re
    import urllib.request

    _shell_pod(node)
    proc = subprocess.Popen(
        [str(node.cluster.tools / "kubectl"), f"--kubeconfig={node.cluster.kubeconfig}",
         "port-forward", "-n", node.namespace, "pod/shell", "--address", "127.0.0.1",
         ":8081"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+) -> 8081", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = f"http://127.0.0.1:{match.group(1)}/index.html"
        for _ in range(2):  # two connections over the same forwarding session
            with urllib.request.urlopen(url, timeout=20) as resp:
                assert resp.read() == b"hello-pf\n"
    finally:
        proc.terminate()
        proc.wait(10)


def _kubelet_get(node: Node, path: str, *, token: str | None = None) -> bytes:
    """GET from the kubelet's HTTPS API as the API server does (its kubelet client
    certificate, x509 then SubjectAccessReview), or with a bearer token."""
    import ssl
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    headers = {}
    if token is None:
        layout = node.cluster.layout
        ctx.load_cert_chain(str(layout.cert("apiserver-kubelet-client")),
                            str(layout.key("apiserver-kubelet-client")))
    else:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"https://127.0.0.1:{node.port}{path}", headers=headers)
    with urllib.request.urlopen(req, context=ctx, timeout=20) as resp:
        body: bytes = resp.read()
    return body


def test_stats_summary_and_metrics(node: Node) -> None:
    """The API server's node proxy (`kubectl get --raw /api/v1/nodes/N/proxy/...`) refuses
    any node address that is not global unicast, and the node IP here is loopback: so the
    kubelet API is called directly, with the API server's own kubelet client identity."""
    import urllib.error

    _shell_pod(node)
    summary = json.loads(_kubelet_get(node, "/stats/summary"))
    assert summary["node"]["nodeName"] == node.name
    assert summary["node"]["cpu"]["usageCoreNanoSeconds"] > 0
    assert summary["node"]["memory"]["workingSetBytes"] > 0
    assert summary["node"]["fs"]["capacityBytes"] > 0
    # containerd refreshes its snapshot usage periodically: present, maybe still 0.
    assert summary["node"]["runtime"]["imageFs"]["usedBytes"] >= 0
    pods = {(p["podRef"]["namespace"], p["podRef"]["name"]): p for p in summary["pods"]}
    shell = pods[(node.namespace, "shell")]
    assert shell["podRef"]["uid"] == node.pod("shell")["metadata"]["uid"]
    assert shell["memory"]["workingSetBytes"] > 0
    assert shell["cpu"]["usageCoreNanoSeconds"] > 0
    assert [c["name"] for c in shell["containers"]] == ["shell"]
    metrics = _kubelet_get(node, "/metrics").decode()
    assert f'kubelet_node_name{{node="{node.name}"}} 1' in metrics
    running = next(ln for ln in metrics.splitlines()
                   if ln.startswith("kubelet_running_pods "))
    assert int(running.split()[1]) >= 2  # the static pod and shell at least
    assert 'kubelet_http_requests_total{long_running="false",method="GET",path="stats"' \
        in metrics
    ops = {ln.split('"')[1]: int(ln.split()[1]) for ln in metrics.splitlines()
           if ln.startswith("kubelet_runtime_operations_total{")}
    assert ops.get("run_podsandbox", 0) >= 1 and ops.get("start_container", 0) >= 1, ops
    assert "kubelet_runtime_operations_duration_seconds_bucket{" in metrics
    token = node.cluster.kubectl("create", "token", "default", "-n", node.namespace).stdout
    for path in ("/stats/summary", "/metrics"):  # no nodes/stats, nodes/metrics: 403
        with pytest.raises(urllib.error.HTTPError) as denied:
            _kubelet_get(node, path, token=token.strip())
        assert denied.value.code == 403


def test_kubectl_attach(node: Node) -> None:
    node.create_pod("ticker", [{"name": "ticker", "image": BUSYBOX, "command": [
        "sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done"]}])
    wait(lambda: (p := node.pod("ticker")) and p["status"].get("phase") == "Running",
         "pod Running", timeout=60)
    proc = subprocess.Popen(
        [str(node.cluster.tools / "kubectl"), f"--kubeconfig={node.cluster.kubeconfig}",
         "attach", "-n", node.namespace, "ticker"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        second = proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(10)
    # Attach shows what the container writes from now on (not the log's past lines).
    assert first.startswith("tick ") and second.startswith("tick "), \
        (first, second, proc.stderr.read() if proc.stderr else "")
    assert int(second.split()[1]) == int(first.split()[1]) + 1


def _logs(node: Node, name: str) -> list[str]:
    return node.cluster.kubectl("logs", "-n", node.namespace, name).stdout.splitlines()


def test_environment_from_config_maps_secrets_and_the_downward_api(node: Node) -> None:
    ns = node.namespace
    node.cluster.kubectl("create", "configmap", "-n", ns, "app-config",
                         "--from-literal=MODE=fast", "--from-literal=LEVEL=3")
    node.cluster.kubectl("create", "secret", "generic", "-n", ns, "app-secret",
                         "--from-literal=PASSWORD=s3cret")
    script = ("echo MODE=$MODE; echo S_PASSWORD=$S_PASSWORD; echo LEVEL=$LEVEL; "
              "echo PICKED=$PICKED; echo POD=$POD_NAME/$POD_NS; echo IP=$POD_IP; "
              "echo NODE=$NODE; echo APP=$APP; echo MEM=$MEM_MI; echo CPU=$CPU_M; "
              "echo URL=$(URL); echo 'ESCAPED=$$(URL)'; echo OPT=${OPT-unset}; "
              "echo API=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT")
    fields = {"POD_NAME": "metadata.name", "POD_NS": "metadata.namespace",
              "POD_IP": "status.podIP", "NODE": "spec.nodeName",
              "APP": "metadata.labels['app']"}
    env = [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in fields.items()]
    env += [
        {"name": "LEVEL", "value": "9"},
        {"name": "PICKED", "valueFrom": {"configMapKeyRef": {"name": "app-config",
                                                             "key": "MODE"}}},
        {"name": "URL", "value": "http://$(MODE):$(LEVEL)"},
        {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k",
                                                       "optional": True}}},
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                              "divisor": "1Mi"}}},
        {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu",
                                                             "divisor": "1m"}}}]
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "envs", "namespace": ns, "labels": {"app": "envtest"}},
            "spec": {"nodeName": node.name, "restartPolicy": "Never",
                     "containers": [{
                         "name": "c", "image": BUSYBOX, "command": ["sh", "-c", script],
                         "envFrom": [{"configMapRef": {"name": "app-config"}},
                                     {"secretRef": {"name": "app-secret"}, "prefix": "S_"}],
                         "env": env,
                         "resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                                       "limits": {"memory": "64Mi"}}}]}}
    node.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))
    wait(lambda: (node.pod("envs") or {}).get("status", {}).get("phase") == "Succeeded",
         "env pod Succeeded", timeout=60)
    ip = node.pod("envs")["status"]["podIP"]
    api = node.get("service", "-n", "default", "kubernetes")["spec"]
    assert _logs(node, "envs") == [
        "MODE=fast", "S_PASSWORD=s3cret", "LEVEL=9", "PICKED=fast", f"POD=envs/{ns}",
        f"IP={ip}", f"NODE={node.name}", "APP=envtest", "MEM=64", "CPU=50",
        "URL=http://fast:9", "ESCAPED=$(URL)", "OPT=unset",
        f"API={api['clusterIP']}:{api['ports'][0]['port']}"]


def test_missing_config_map_waits_then_starts_when_it_appears(node: Node) -> None:
    ns = node.namespace
    name = f"late-{secrets.token_hex(3)}"
    node.create_pod("late", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"],
                              "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {
                                  "name": name, "key": "x"}}}]}])
    wait(lambda: _state(node.pod("late")).get("state", {}).get("waiting", {}).get("reason")
         == "CreateContainerConfigError", "CreateContainerConfigError", timeout=60)
    assert _state(node.pod("late"))["state"]["waiting"]["message"] == \
        f'configmap "{name}" not found'
    wait(lambda: any(e["reason"] == "Failed" and e["message"] ==
                     f'Error: configmap "{name}" not found' for e in _events(node, "late")),
         "a Failed event with the message", timeout=60)
    node.cluster.kubectl("create", "configmap", "-n", ns, name, "--from-literal=wrong=1")
    wait(lambda: _state(node.pod("late")).get("state", {}).get("waiting", {}).get("message")
         == f"couldn't find key x in ConfigMap {ns}/{name}", "the missing key named",
         timeout=60)
    node.cluster.kubectl("patch", "configmap", "-n", ns, name, "--type=merge",
                         "-p", json.dumps({"data": {"x": "1"}}))
    wait(lambda: (node.pod("late") or {}).get("status", {}).get("phase") == "Running",
         "Running once the key exists", timeout=60)


def test_changed_image_restarts_the_container(node: Node) -> None:
    node.create_pod("retag", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]},
                              {"name": "side", "image": BUSYBOX,
                               "command": ["sleep", "3600"]}])
    wait(lambda: (node.pod("retag") or {}).get("status", {}).get("phase") == "Running",
         "pod Running", timeout=60)
    before = _state(node.pod("retag"))["containerID"]
    node.cluster.kubectl("set", "image", "-n", node.namespace, "pod/retag",
                         "c=docker.io/library/busybox:1.28")

    def restarted() -> Any:
        st = _state(node.pod("retag"))
        return st if st.get("restartCount") == 1 and "running" in st.get("state", {}) \
            and st.get("containerID") != before else None

    st = wait(restarted, "container c recreated", timeout=60)
    assert st["image"] == "docker.io/library/busybox:1.28"
    assert _state(node.pod("retag"), 1)["restartCount"] == 0  # the other one untouched
    wait(lambda: any(e["reason"] == "Killing" and
                     e["message"] == "Container c definition changed, will be restarted"
                     for e in _events(node, "retag")),
         "the Killing event", timeout=60)  # events are posted apart from the status


def test_active_deadline_set_on_a_running_pod(node: Node) -> None:
    node.create_pod("deadline", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}])
    wait(lambda: (node.pod("deadline") or {}).get("status", {}).get("phase") == "Running",
         "pod Running", timeout=60)
    # A pod update Kubernetes allows: setting activeDeadlineSeconds on a running pod.
    node.cluster.kubectl("patch", "pod", "-n", node.namespace, "deadline",
                         "-p", json.dumps({"spec": {"activeDeadlineSeconds": 5}}))
    status = wait(lambda: (s := (node.pod("deadline") or {}).get("status", {})).get(
        "phase") == "Failed" and s, "pod Failed", timeout=60)
    assert status["reason"] == "DeadlineExceeded", status
    assert status["message"] == "Pod was active on the node longer than the specified deadline"
    wait(lambda: "terminated" in _state(node.pod("deadline")).get("state", {}),
         "container stopped", timeout=60)
    wait(lambda: any(e["reason"] == "DeadlineExceeded" for e in _events(node, "deadline")),
         "a DeadlineExceeded event", timeout=60)  # posted apart from the status
