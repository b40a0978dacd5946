"""Pods with `spec.hostUsers: false` through kubelet-py on the real control plane, on both
runtimes: each pod gets its own user namespace mapping container root to a block of 65536
host IDs the kubelet allocated; the blocks stay unique across a kubelet restart and are
freed when the pods go."""
from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_kubelet_join import wait
from tests.e2e.test_kubelet_pods import (  # noqa: F401 (fixtures)
    BUSYBOX,
    Node,
    Runtime,
    _events,
    _state,
    node,
    runtime,
)
from tests.harness.containerd import cni_conflist, containerd  # noqa: F401
from tests.harness.engined import Engined
from tests.harness.prereq import need_root, need_tool
from tests.harness.registry import LocalRegistry, local_registry  # noqa: F401

pytestmark = pytest.mark.e2e
BLOCK = 65536


@pytest.fixture(scope="module")
def engined(local_registry: LocalRegistry) -> Iterator[Runtime]:  # noqa: F811
    """engined as in test_kubelet_pods, but with its state under /run (mode 0711): the root
    of a pod user namespace is an unprivileged host uid and must be able to reach the
    engine's run root (pytest's tmp dirs are 0700)."""
    need_root()
    tools = need_tool("bridge").parent
    workdir = Path(f"/run/kubelet-py-test-{secrets.token_hex(4)}")
    workdir.mkdir(mode=0o711)
    workdir.chmod(0o711)
    bridge = f"kpy{secrets.token_hex(3)}"
    subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
    try:
        with Engined.create(workdir, registry_hosts=local_registry.root / "mirrors.yaml",
                            conflist=cni_conflist(bridge=bridge, subnet=subnet),
                            cni_bin_dirs=[tools], graph_driver="vfs") as daemon:
            yield Runtime("engined", daemon.endpoint, subnet)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _start(kn: Node, name: str) -> tuple[str, int]:
    """A hostUsers: false pod sleeping with a marker argument; (its UID, the marker)."""
    marker = random.randint(10**6, 10**7)
    kn.create_pod(name, [{"name": "c", "image": BUSYBOX, "command": ["sleep", str(marker)]}],
                    hostUsers=False)
    pod = wait(lambda: (p := kn.pod(name)) and (
        p["status"].get("phase") == "Running" or any(
            e["reason"] == "FailedCreatePodSandBox" for e in _events(kn, name))) and p,
        f"pod {name} Running (or its sandbox failing)", timeout=90)
    events = [e["message"] for e in _events(kn, name) if e["reason"] != "Scheduled"]
    assert pod["status"].get("phase") == "Running", events
    return pod["metadata"]["uid"], marker


def _block(kn: Node, uid: str) -> int:
    """The first host ID the kubelet recorded for the pod (its state file)."""
    doc = json.loads((kn.root / "pods" / uid / "userns").read_text())
    assert doc["uidMappings"] == doc["gidMappings"]
    [m] = doc["uidMappings"]
    assert (m["containerId"], m["length"]) == (0, BLOCK)
    first = int(m["hostId"])
    assert first >= BLOCK and first % BLOCK == 0
    return first


def _exec(kn: Node, name: str, *cmd: str) -> str:
    return kn.cluster.kubectl("exec", "-n", kn.namespace, name, "--", *cmd).stdout


def _host_ids(marker: int) -> tuple[list[int], list[int]]:
    """Uid and Gid lines (real, effective, saved, fs) of the host process `sleep <marker>`
    (a running container's init may exec it a moment after the runtime said it started)."""
    found: tuple[list[int], list[int]] = wait(
        lambda: _find_host_ids(marker), f"a host process `sleep {marker}`", timeout=60)
    return found


def _find_host_ids(marker: int) -> tuple[list[int], list[int]] | None:
    want = f"sleep\0{marker}\0".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes() != want:
                continue
            lines = (entry / "status").read_text().splitlines()
        except OSError:
            continue
        fields = {k: v.split() for k, _, v in (line.partition(":") for line in lines)}
        return [int(x) for x in fields["Uid"]], [int(x) for x in fields["Gid"]]
    return None


def _delete(kn: Node, *names: str) -> None:
    kn.cluster.kubectl("delete", "pod", "-n", kn.namespace, *names, "--wait=false",
                         check=False)


def runc_has_idmap_mounts() -> bool:
    """containerd reports user namespaces for a runc handler only when `runc features`
    lists ID-mapped mounts (runc >= 1.2); Debian 12's runc 1.1.5 does not."""
    done = subprocess.run(["runc", "features"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return False
    ext = (json.loads(done.stdout).get("linux") or {}).get("mountExtensions") or {}
    return bool((ext.get("idmap") or {}).get("enabled"))


def expects_userns(rt: Runtime) -> bool:
    """engined does user namespaces on this kernel (its own ID-mapped mounts);
    containerd 2.2 with runc only when runc does ID-mapped mounts."""
    return rt.name == "engined" or runc_has_idmap_mounts()


def _sandboxes(kn: Node, uid: str) -> list[str]:
    crictl = need_tool("crictl")
    done = subprocess.run([str(crictl), "--runtime-endpoint", kn.runtime.endpoint, "pods",
                           "-q", "--label", f"io.kubernetes.pod.uid={uid}"],
                          capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.split()


def _assert_refused(kn: Node) -> None:
    """The runtime cannot: the sandbox is never created (no silent host-userns pod), the
    pod waits in ContainerCreating with upstream's event, and no block is taken."""
    kn.create_pod("userns-no", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}],
                  hostUsers=False)
    try:
        event = wait(lambda: next((e for e in _events(kn, "userns-no")
                                   if e["reason"] == "FailedCreatePodSandBox"), None),
                     "FailedCreatePodSandBox", timeout=60)
        assert event["message"] == ("Failed to create pod sandbox: can't set `spec.hostUsers: "
                                    "false`, runtime does not support user namespaces")
        pod = kn.pod("userns-no")
        assert _state(pod)["state"]["waiting"]["reason"] == "ContainerCreating"
        assert pod["status"]["phase"] == "Pending"
        uid = pod["metadata"]["uid"]
        assert _sandboxes(kn, uid) == []
        assert not (kn.root / "pods" / uid / "userns").exists()
    finally:
        _delete(kn, "userns-no")


def test_host_users_false_pod_runs_in_its_own_user_namespace(node: Node) -> None:  # noqa: F811
    """On a runtime that can (engined here), the full behaviour; on one that cannot
    (containerd with Debian 12's runc 1.1.5, no ID-mapped mounts), the precise refusal."""
    if os.geteuid() != 0:
        pytest.fail("the e2e kubelet tests run as root (the runtimes need it)")
    if not expects_userns(node.runtime):
        _assert_refused(node)
        return
    uid, marker = _start(node, "userns-a")
    first = _block(node, uid)
    for path in ("/proc/self/uid_map", "/proc/self/gid_map"):
        assert _exec(node, "userns-a", "cat", path).split() == ["0", str(first), str(BLOCK)]
    assert _exec(node, "userns-a", "id", "-u").strip() == "0"
    assert _exec(node, "userns-a", "id", "-g").strip() == "0"
    uids, gids = _host_ids(marker)
    assert uids == [first] * 4 and gids == [first] * 4

    uid_b, marker_b = _start(node, "userns-b")
    second = _block(node, uid_b)
    assert second != first  # blocks of 65536 aligned on 65536: distinct = disjoint
    assert _host_ids(marker_b)[0] == [second] * 4
    container = _state(node.pod("userns-a"))["containerID"]

    node.restart()  # allocations come back from the state files, nothing is handed twice
    wait(lambda: node.kubelet.proc.poll() is None and
         "pod manager running" in node.kubelet.output(), "kubelet restarted", timeout=60)
    uid_c, marker_c = _start(node, "userns-c")
    third = _block(node, uid_c)
    assert third not in (first, second)
    assert _host_ids(marker_c)[0] == [third] * 4
    after = _state(node.pod("userns-a"))
    assert after["containerID"] == container and after["restartCount"] == 0
    assert _host_ids(marker)[0] == [first] * 4

    _delete(node, "userns-a", "userns-b", "userns-c")
    for u in (uid, uid_b, uid_c):  # the blocks are freed with the pods' sandboxes
        wait(lambda u=u: not (node.root / "pods" / u / "userns").exists(),
             f"pod {u}'s user namespace block released", timeout=60)
    uid_d, _ = _start(node, "userns-d")
    assert _block(node, uid_d) == min(first, second, third)  # the lowest free block again
    _delete(node, "userns-d")


def test_host_users_false_with_an_unsupported_handler(node: Node) -> None:  # noqa: F811
    """A RuntimeClass whose handler the runtime does not have: the pod never runs in the
    host's user namespace; its sandbox creation fails with upstream's message."""
    rc = f"kpy-userns-{random.randint(0, 10**6)}"
    node.cluster.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": rc}, "handler": "no-such-handler"}))
    try:
        node.create_pod("userns-rc", [{"name": "c", "image": BUSYBOX,
                                       "command": ["sleep", "3600"]}],
                        hostUsers=False, runtimeClassName=rc)
        event = wait(lambda: next((e for e in _events(node, "userns-rc")
                                   if e["reason"] == "FailedCreatePodSandBox"), None),
                     "FailedCreatePodSandBox", timeout=60)
        assert event["message"] == (
            "Failed to create pod sandbox: can't set `spec.hostUsers: false`, RuntimeClass "
            "handler \"no-such-handler\" does not support user namespaces: the handler "
            "\"no-such-handler\" is not known")
        # the event and the status are posted apart, in no fixed order
        wait(lambda: _state(node.pod("userns-rc")).get("state", {}).get("waiting", {}).get(
            "reason") == "ContainerCreating", "the ContainerCreating status", timeout=60)
        uid = node.pod("userns-rc")["metadata"]["uid"]
        assert not (node.root / "pods" / uid / "userns").exists()
    finally:
        _delete(node, "userns-rc")
        node.cluster.kubectl("delete", "runtimeclass", rc, "--wait=false", check=False)
