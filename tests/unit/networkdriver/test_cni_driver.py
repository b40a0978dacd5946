"""The engine's CNI driver against recording fake plugins and our IPAM (no root needed)."""
from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from engine import errors
from engine.networkdriver.base import PodNetworkRequest, PortMapping
from engine.networkdriver.cni import CNIDriver
from engine.networkdriver.plugins import install

FAKE = """#!/bin/sh
d={log}
n=$(ls "$d" | wc -l)
cat > "$d/$n-$CNI_COMMAND-{name}.json"
env | grep '^CNI_' | sort > "$d/$n-$CNI_COMMAND-{name}.env"
if [ -n "{fail}" ] && [ "$CNI_COMMAND" = "{fail}" ]; then
  echo '{{"cniVersion":"1.0.0","code":100,"msg":"no IP addresses available in range set"}}'
  exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then
  {py} -c 'import json,sys
c = json.load(open(sys.argv[1]))
r = c.get("prevResult") or {{"interfaces": [{{"name": "eth0", "sandbox": "/x"}}],
     "ips": [{{"address": "10.0.0.5/24", "interface": 0}},
             {{"address": "fd00::5/64", "interface": 0}}]}}
r["cniVersion"] = c["cniVersion"]
print(json.dumps(r))' "$d/$n-ADD-{name}.json"
fi
"""


def fake(bin_dir: Path, log: Path, name: str, fail: str = "") -> None:
    import sys

    path = bin_dir / name
    path.write_text(FAKE.format(log=log, name=name, fail=fail, py=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def calls(log: Path) -> list[tuple[str, str, dict]]:
    out = []
    for p in sorted(log.glob("*.json"), key=lambda p: int(p.name.split("-")[0])):
        _, command, name = p.stem.split("-", 2)
        out.append((command, name, json.loads(p.read_text())))
    return out


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, Path]:
    dirs = {k: tmp_path / k for k in ("conf", "bin", "bin2", "log", "cache")}
    for d in dirs.values():
        d.mkdir()
    return dirs


def write_conf(conf_dir: Path, plugins: list[dict], name: str = "10-net.conflist",
               **extra: object) -> None:
    (conf_dir / name).write_text(json.dumps({"cniVersion": "1.0.0", "name": "podnet",
                                             "plugins": plugins, **extra}))


REQ = PodNetworkRequest(sandbox_id="sb1", netns_path="/run/netns/sb1", pod_name="web",
                        pod_namespace="default", pod_uid="uid-1",
                        port_mappings=(PortMapping("TCP", 80, 8080),))


def driver(env: dict[str, Path], **kw: object) -> CNIDriver:
    return CNIDriver(conf_dir=env["conf"], bin_dirs=[env["bin"], env["bin2"]],
                     cache_dir=env["cache"], **kw)  # type: ignore[arg-type]


def test_ready_reports_reasons_until_a_valid_config_exists(env: dict[str, Path]) -> None:
    d = driver(env)
    ok, reason = d.ready()
    assert not ok and "no network config" in reason
    (env["conf"] / "00-bad.conflist").write_text("{nope")
    ok, reason = d.ready()
    assert not ok and "malformed JSON" in reason
    (env["conf"] / "00-bad.conflist").unlink()
    write_conf(env["conf"], [{"type": "first", "capabilities": {"ipRanges": True}}])
    ok, reason = d.ready()
    assert not ok and "failed to find plugin 'first'" in reason
    fake(env["bin2"], env["log"], "first")
    ok, reason = d.ready()
    assert not ok and "pod CIDR" in reason
    d.set_pod_cidr("10.244.1.0/24")
    assert d.ready() == (True, "")
    with pytest.raises(errors.InvalidArgument):
        d.set_pod_cidr("not-a-cidr")


def test_a_type_with_a_path_makes_the_config_invalid(env: dict[str, Path]) -> None:
    write_conf(env["conf"], [{"type": "../../bin/sh"}])
    ok, reason = driver(env).ready()
    assert not ok and "not a path" in reason


def test_chain_add_check_del_with_prev_result_and_capabilities(env: dict[str, Path]) -> None:
    fake(env["bin"], env["log"], "first")
    fake(env["bin2"], env["log"], "second")
    write_conf(env["conf"], [
        {"type": "first", "capabilities": {"ipRanges": True}, "cniVersion": "0.0.1"},
        {"type": "second", "capabilities": {"portMappings": True}}])
    d = driver(env)
    d.set_pod_cidr("10.244.1.0/24")
    res = d.setup(REQ)
    assert res.ips == ("10.0.0.5", "fd00::5")
    d.check(REQ)
    d.teardown(REQ)
    d.teardown(REQ)  # idempotent: no cache, runs DEL again without prevResult
    seq = [(c, n) for c, n, _ in calls(env["log"])]
    assert seq == [("ADD", "first"), ("ADD", "second"), ("CHECK", "first"), ("CHECK", "second"),
                   ("DEL", "second"), ("DEL", "first"), ("DEL", "second"), ("DEL", "first")]
    c = calls(env["log"])
    add1, add2, check1, _, del2, del1 = (x[2] for x in c[:6])
    assert add1["name"] == "podnet" and add1["cniVersion"] == "1.0.0"
    assert add1["runtimeConfig"] == {"ipRanges": [[{"subnet": "10.244.1.0/24"}]]}
    assert "prevResult" not in add1
    assert add2["runtimeConfig"] == {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    assert add2["prevResult"]["ips"][0]["address"] == "10.0.0.5/24"
    assert check1["prevResult"] == del2["prevResult"] == del1["prevResult"]
    assert "prevResult" not in c[6][2]
    envs = sorted(env["log"].glob("*-ADD-first.env"))[0].read_text()
    assert "CNI_CONTAINERID=sb1" in envs and "CNI_IFNAME=eth0" in envs
    assert "K8S_POD_NAME=web" in envs and "K8S_POD_NAMESPACE=default" in envs
    assert f"CNI_PATH={env['bin']}:{env['bin2']}" in envs
    assert not list((env["cache"] / "results").iterdir())


def test_failed_add_deletes_the_whole_chain_and_maps_the_error(env: dict[str, Path]) -> None:
    fake(env["bin"], env["log"], "first")
    fake(env["bin"], env["log"], "second", fail="ADD")
    write_conf(env["conf"], [{"type": "first"}, {"type": "second"}])
    with pytest.raises(errors.ResourceExhausted) as err:
        driver(env).setup(REQ)
    assert "code 100" in str(err.value) and "no IP addresses available" in str(err.value)
    seq = [(c, n) for c, n, _ in calls(env["log"])]
    assert seq == [("ADD", "first"), ("ADD", "second"), ("DEL", "second"), ("DEL", "first")]


def test_check_without_an_attachment_is_not_found(env: dict[str, Path]) -> None:
    fake(env["bin"], env["log"], "first")
    write_conf(env["conf"], [{"type": "first"}])
    with pytest.raises(errors.NotFound):
        driver(env).check(REQ)


def test_gc_deletes_stale_cached_attachments_then_calls_plugin_gc(env: dict[str, Path]) -> None:
    fake(env["bin"], env["log"], "first")
    write_conf(env["conf"], [{"type": "first"}], cniVersion="1.1.0")
    d = driver(env)
    d.setup(REQ)
    other = PodNetworkRequest(sandbox_id="sb2", netns_path="/x", pod_name="b",
                              pod_namespace="default", pod_uid="u2")
    d.setup(other)
    d.gc([("sb2", "eth0")])
    c = calls(env["log"])
    assert [(x[0]) for x in c] == ["ADD", "ADD", "DEL", "GC"]
    assert c[3][2]["cni.dev/valid-attachments"] == [{"containerID": "sb2", "ifname": "eth0"}]


@pytest.mark.parametrize("in_process", [True, False])
def test_our_ipam_through_the_driver_in_process_and_exec(env: dict[str, Path],
                                                         in_process: bool) -> None:
    install.install(env["bin"])
    write_conf(env["conf"], [{"type": "kpy-host-local", "capabilities": {"ipRanges": True},
                              "ipam": {"type": "kpy-host-local",
                                       "dataDir": str(env["log"])}}])
    d = driver(env, in_process=in_process)
    d.set_pod_cidr("10.66.0.0/24,fd66::/64")
    res = d.setup(REQ)
    assert res.ips == ("10.66.0.2", "fd66::2")
    assert (env["log"] / "podnet" / "10.66.0.2").read_bytes() == b"sb1\r\neth0"
    d.check(REQ)
    d.teardown(REQ)
    assert not (env["log"] / "podnet" / "10.66.0.2").exists()


def test_the_same_sandbox_twice_is_refused_before_any_plugin_runs(env: dict[str, Path]) -> None:
    fake(env["bin"], env["log"], "first")
    write_conf(env["conf"], [{"type": "first"}])
    d = driver(env)
    d.setup(REQ)
    with pytest.raises(errors.AlreadyExists):
        d.setup(REQ)
    assert [(c, n) for c, n, _ in calls(env["log"])] == [("ADD", "first")]


def test_the_shipped_conflist_uses_our_plugins_and_pod_cidr_ranges() -> None:
    from engine.networkdriver import cniconf
    from tests.harness.prereq import REPO

    path = REPO / "manifests/cni/10-kubelet-py.conflist"
    conf = cniconf.parse(path.read_bytes(), path=str(path))
    assert conf.cni_version == "1.1.0"
    kinds = [p["type"] for p in conf.plugins]
    assert kinds[:2] == ["kpy-bridge", "kpy-loopback"]
    bridge = conf.plugins[0]
    assert bridge["bridge"] == "kpy0" and bridge["capabilities"] == {"ipRanges": True}
    assert bridge["ipam"]["type"] == "kpy-host-local"


@pytest.mark.parametrize("body, needle", [
    ({"cniVersion": "9.9.9", "name": "n", "plugins": [{"type": "x"}]}, "unsupported cniVersion"),
    ({"cniVersions": ["0.1.0"], "name": "n", "plugins": [{"type": "x"}]}, "no supported version"),
    ({"cniVersion": "1.0.0", "name": "n", "plugins": []}, "non-empty"),
    ({"cniVersion": "1.0.0", "name": "bad name!", "plugins": [{"type": "x"}]}, "network name"),
])
def test_invalid_conflists_keep_the_network_not_ready(env: dict[str, Path], body: dict,
                                                      needle: str) -> None:
    (env["conf"] / "10-x.conflist").write_text(json.dumps(body))
    ok, reason = driver(env).ready()
    assert not ok and needle in reason


def test_cni_versions_picks_the_highest_we_support(env: dict[str, Path]) -> None:
    from engine.networkdriver import cniconf

    conf = cniconf.parse(json.dumps({"cniVersions": ["0.4.0", "1.1.0", "2.0.0"], "name": "n",
                                     "plugins": [{"type": "x"}]}).encode())
    assert conf.cni_version == "1.1.0"
