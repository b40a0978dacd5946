from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from kubelet_py.client.errors import ApiUnavailable, NotFound
from kubelet_py.node.allocatable import Allocatable
from kubelet_py.pods.downward import DownwardError, PodPlacement, field_value, resource_value
from kubelet_py.pods.envvars import EnvError, build_environment, valid_name
from kubelet_py.pods.expansion import expand, lookup_in

from .fakes import run_async

ALLOC = Allocatable(cpu_millis=2000, memory_bytes=4 * 2**30,
                    ephemeral_storage_bytes=20 * 2**30, pods=110)
WHERE = PodPlacement(node_name="n1", host_ips=("192.0.2.10", "2001:db8::10"),
                     pod_ips=("10.0.0.7", "fd00::7"))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Objects:
    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects
        self.gets: list[str] = []
        self.down = False

    async def get(self, path: str, *, params: Any = None) -> dict[str, Any]:
        self.gets.append(path)
        if self.down:
            raise ApiUnavailable("connection refused")
        if path not in self.objects:
            raise NotFound(404, "NotFound", path)
        return self.objects[path]


def api() -> Objects:
    return Objects({
        "/api/v1/namespaces/ns/configmaps/cfg": {"data": {"MODE": "fast", "LEVEL": "3",
                                                           "bad=key": "x", "1ok": "y"}},
        "/api/v1/namespaces/ns/secrets/sec": {"data": {"PASSWORD": b64("s3cret"),
                                                       "MODE": b64("from-secret")}}})


def pod(**container: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                         "labels": {"app": "web", "tier": "a"},
                         "annotations": {"note": "hi"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "robot",
                     "containers": [{"name": "c", "image": "i", **container}]}}


async def build(p: dict[str, Any], source: Objects | None = None) -> dict[str, str]:
    env = await build_environment(p, p["spec"]["containers"][0], api=source or api(),
                                  where=WHERE, allocatable=ALLOC)
    return env.as_dict()


def test_expand() -> None:
    look = lookup_in({"A": "1", "B": "two"})
    assert expand("$(A)-$(B)", look) == "1-two"
    assert expand("$$(A) $$ $", look) == "$(A) $ $"
    assert expand("$(MISSING) $(A", look) == "$(MISSING) $(A"
    assert expand("$x $() a$", look) == "$x $() a$"
    assert expand("", look) == ""


def test_valid_names() -> None:
    assert valid_name("my.env-name") and valid_name("1ok") and valid_name("A B")
    assert not valid_name("") and not valid_name("a=b") and not valid_name("tab\t")
    assert not valid_name("é")


@run_async
async def test_env_from_with_prefix_env_overrides_and_expansion() -> None:
    p = pod(envFrom=[{"configMapRef": {"name": "cfg"}},
                     {"secretRef": {"name": "sec"}, "prefix": "S_"},
                     {"configMapRef": {"name": "absent", "optional": True}}],
            env=[{"name": "LEVEL", "value": "9"},
                 {"name": "URL", "value": "http://$(MODE):$(LEVEL)/$(S_PASSWORD)/$$(MODE)"},
                 {"name": "LATER", "value": "$(EARLIER)"},
                 {"name": "EARLIER", "value": "e"}])
    env = await build_environment(p, p["spec"]["containers"][0], api=api(), where=WHERE,
                                  allocatable=ALLOC)
    values = env.as_dict()
    assert values["MODE"] == "fast" and values["1ok"] == "y"
    assert values["S_PASSWORD"] == "s3cret" and values["S_MODE"] == "from-secret"
    assert values["LEVEL"] == "9"
    assert values["URL"] == "http://fast:9/s3cret/$(MODE)"
    assert values["LATER"] == "$(EARLIER)"  # only variables defined before expand
    assert "bad=key" not in values
    assert env.skipped == ("Keys [bad=key] from the EnvFrom configmap ns/cfg were skipped "
                           "since they are considered invalid environment variable names.",)
    assert [k for k, _ in env.env][-3:] == ["URL", "LATER", "EARLIER"]


@run_async
async def test_value_from_refs_and_optional() -> None:
    source = api()
    p = pod(env=[
        {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
        {"name": "P", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "PASSWORD"}}},
        {"name": "O1", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nokey",
                                                         "optional": True}}},
        {"name": "O2", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k",
                                                      "optional": True}}},
        {"name": "L", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "LEVEL"}}}])
    values = await build(p, source)
    assert values == {"M": "fast", "P": "s3cret", "L": "3"}
    # Each object is read once per container, however many variables use it.
    assert source.gets.count("/api/v1/namespaces/ns/configmaps/cfg") == 1


@pytest.mark.parametrize("env,message", [
    ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}],
     'configmap "gone" not found'),
    ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}],
     'secret "gone" not found'),
    ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}],
     "couldn't find key k in ConfigMap ns/cfg"),
    ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}}],
     "couldn't find key k in Secret ns/sec"),
    ([{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}}],
     'unsupported fieldPath: "spec.hostname"'),
    ([{"name": "X", "valueFrom": {"fileKeyRef": {"path": "a", "key": "b"}}}],
     r"valueFrom \['fileKeyRef'\] is not supported"),
])
def test_missing_sources_are_precise_errors(env: list[Any], message: str) -> None:
    with pytest.raises(EnvError, match=message):
        asyncio.run(build(pod(env=env)))


def test_env_from_missing_object_and_api_down() -> None:
    with pytest.raises(EnvError, match=r'^secret "nope" not found$'):
        asyncio.run(build(pod(envFrom=[{"secretRef": {"name": "nope"}}])))
    down = api()
    down.down = True
    with pytest.raises(EnvError, match="couldn't get configMap ns/cfg: connection refused"):
        asyncio.run(build(pod(envFrom=[{"configMapRef": {"name": "cfg"}}]), down))


def test_standalone_has_no_objects() -> None:
    async def go() -> None:
        p = pod(envFrom=[{"configMapRef": {"name": "cfg"}}])
        await build_environment(p, p["spec"]["containers"][0], api=None, where=WHERE,
                                allocatable=ALLOC)
    with pytest.raises(EnvError, match="couldn't get configMap ns/cfg, no kubeClient defined"):
        run_async(go)()


@run_async
async def test_field_refs() -> None:
    paths = {"NAME": "metadata.name", "NS": "metadata.namespace", "UID": "metadata.uid",
             "APP": "metadata.labels['app']", "NOTE": "metadata.annotations['note']",
             "NONE": "metadata.labels['absent']", "NODE": "spec.nodeName",
             "SA": "spec.serviceAccountName", "PIP": "status.podIP",
             "PIPS": "status.podIPs", "HIP": "status.hostIP", "HIPS": "status.hostIPs"}
    p = pod(env=[{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}}
                 for k, v in paths.items()])
    assert await build(p) == {
        "NAME": "p", "NS": "ns", "UID": "u1", "APP": "web", "NOTE": "hi", "NONE": "",
        "NODE": "n1", "SA": "robot", "PIP": "10.0.0.7", "PIPS": "10.0.0.7,fd00::7",
        "HIP": "192.0.2.10", "HIPS": "192.0.2.10,2001:db8::10"}
    assert field_value(pod(), "metadata.labels", WHERE) == 'app="web"\ntier="a"'


def test_resource_field_refs() -> None:
    c = {"name": "c", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
                                    "limits": {"cpu": "1500m", "memory": "128Mi"}}}
    p = pod(**c)

    def value(resource: str, divisor: str | None = None, container: Any = c) -> str:
        selector = {"resource": resource, **({"divisor": divisor} if divisor else {})}
        return resource_value(p, container, selector, ALLOC)

    assert value("limits.cpu") == "2"  # 1.5 cores rounded up
    assert value("limits.cpu", "1m") == "1500"
    assert value("requests.cpu", "100m") == "3"
    assert value("requests.memory", "1Mi") == "64"
    assert value("limits.memory") == str(128 * 2**20)
    bare = {"name": "b"}
    assert value("limits.cpu", "1m", bare) == "2000"  # node allocatable
    assert value("limits.memory", "1Gi", bare) == "4"
    assert value("limits.ephemeral-storage", "1Gi", bare) == "20"
    assert value("requests.cpu", None, bare) == "0"
    by_name = resource_value(p, None, {"resource": "limits.memory", "containerName": "c",
                                       "divisor": "1Mi"}, ALLOC)
    assert by_name == "128"
    with pytest.raises(DownwardError, match="unsupported container resource"):
        value("limits.gpu")
    with pytest.raises(DownwardError, match='container "x" not found'):
        resource_value(p, c, {"resource": "limits.cpu", "containerName": "x"}, ALLOC)


@run_async
async def test_resource_field_ref_in_env() -> None:
    p = pod(resources={"limits": {"memory": "256Mi"}}, env=[
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                           "divisor": "1Mi"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}])
    assert await build(p) == {"MEM": "256", "CPU": "2"}


def svc(ns: str, name: str, ip: str, *ports: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "ports": list(ports)}}


SERVICES = [
    svc("default", "kubernetes", "10.96.0.1", {"name": "https", "port": 443}),
    svc("ns", "my-db", "10.96.0.20", {"name": "sql", "port": 5432},
        {"port": 53, "protocol": "UDP"}),
    svc("ns", "headless", "None", {"port": 80}),
    svc("other", "elsewhere", "10.96.0.30", {"port": 80}),
    svc("ns", "v6", "fd00::5", {"port": 80})]


def test_service_variables() -> None:
    from kubelet_py.pods.service_env import service_env
    env = service_env(SERVICES, namespace="ns", links=True)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT"] == "tcp://10.96.0.1:443"
    assert env["KUBERNETES_PORT_443_TCP_ADDR"] == "10.96.0.1"
    assert env["MY_DB_SERVICE_PORT_SQL"] == "5432" and env["MY_DB_SERVICE_PORT"] == "5432"
    assert env["MY_DB_PORT"] == "tcp://10.96.0.20:5432"
    assert env["MY_DB_PORT_53_UDP"] == "udp://10.96.0.20:53"
    assert env["MY_DB_PORT_53_UDP_PROTO"] == "udp" and env["MY_DB_PORT_53_UDP_PORT"] == "53"
    assert env["V6_PORT"] == "tcp://[fd00::5]:80"
    assert not any(k.startswith(("HEADLESS_", "ELSEWHERE_")) for k in env)
    # enableServiceLinks: false keeps only the master service.
    only = service_env(SERVICES, namespace="ns", links=False)
    assert {k.split("_")[0] for k in only} == {"KUBERNETES"}


def test_service_links_wait_for_the_first_listing() -> None:
    from kubelet_py.pods.service_env import ServiceLinks, ServicesNotSynced
    synced = False
    links = ServiceLinks(lambda: SERVICES, lambda: synced)
    with pytest.raises(ServicesNotSynced, match="services have not yet been read"):
        links.env_for("ns", links=True)
    synced = True
    assert "MY_DB_SERVICE_HOST" in links.env_for("ns", links=True)
    assert ServiceLinks(None, lambda: False).env_for("ns", links=True) == {}


@run_async
async def test_service_variables_come_last_and_feed_expansion() -> None:
    p = pod(env=[{"name": "KUBERNETES_SERVICE_HOST", "value": "mine"},
                 {"name": "DB", "value": "$(MY_DB_SERVICE_HOST):$(MY_DB_SERVICE_PORT)"}])
    env = await build_environment(p, p["spec"]["containers"][0], api=api(), where=WHERE,
                                  allocatable=ALLOC,
                                  services={"KUBERNETES_SERVICE_HOST": "10.96.0.1",
                                            "MY_DB_SERVICE_HOST": "10.96.0.20",
                                            "MY_DB_SERVICE_PORT": "5432"})
    assert env.env == (("KUBERNETES_SERVICE_HOST", "mine"), ("DB", "10.96.0.20:5432"),
                       ("MY_DB_SERVICE_HOST", "10.96.0.20"), ("MY_DB_SERVICE_PORT", "5432"))
