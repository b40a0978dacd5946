from __future__ import annotations

import json

import pytest

from engine.networkdriver.plugins import hostlocal, spec

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}


def conf(**kw: object) -> bytes:
    base = {"cniVersion": "1.1.0", "name": "n1", "type": "kpy-host-local",
            "ipam": {"type": "kpy-host-local", "subnet": "10.0.0.0/24"}}
    base.update(kw)
    return json.dumps(base).encode()


def error_of(env: dict, stdin: bytes) -> dict:
    code, out = hostlocal.run(env, stdin)
    assert code == 1
    return json.loads(out)


def test_version_command() -> None:
    code, out = hostlocal.run({"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"1.1.0"}')
    assert code == 0
    assert json.loads(out) == {"cniVersion": "1.1.0", "supportedVersions": [
        "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


@pytest.mark.parametrize("env_change, stdin, code", [
    ({}, b"{not json", spec.ERR_DECODE),
    ({}, b"[1, 2]", spec.ERR_DECODE),
    ({}, conf(cniVersion="9.9.9"), spec.ERR_INCOMPATIBLE_VERSION),
    ({}, conf(cniVersion=None), spec.ERR_INVALID_CONFIG),
    ({}, conf(name="bad name"), spec.ERR_INVALID_CONFIG),
    ({"CNI_COMMAND": ""}, conf(), spec.ERR_INVALID_ENV),
    ({"CNI_COMMAND": "FROB"}, conf(), spec.ERR_INVALID_ENV),
    ({"CNI_CONTAINERID": ""}, conf(), spec.ERR_INVALID_ENV),
    ({"CNI_CONTAINERID": "bad/id"}, conf(), spec.ERR_INVALID_ENV),
    ({"CNI_IFNAME": "a-very-long-ifname"}, conf(), spec.ERR_INVALID_ENV),
    ({"CNI_IFNAME": "eth/0"}, conf(), spec.ERR_INVALID_ENV),
    ({"CNI_NETNS": ""}, conf(), spec.ERR_INVALID_ENV),
    ({"CNI_PATH": ""}, conf(), spec.ERR_INVALID_ENV),
    ({"CNI_ARGS": "novalue"}, conf(), spec.ERR_INVALID_ENV),
    ({"CNI_COMMAND": "CHECK"}, conf(cniVersion="0.3.1"), spec.ERR_INCOMPATIBLE_VERSION),
    ({"CNI_COMMAND": "GC"}, conf(cniVersion="1.0.0"), spec.ERR_INCOMPATIBLE_VERSION),
])
def test_bad_input_gives_the_spec_error_code(env_change: dict, stdin: bytes, code: int) -> None:
    body = error_of({**ENV, **env_change}, stdin)
    assert body["code"] == code
    assert body["msg"]
    assert body["cniVersion"] in spec.SUPPORTED_VERSIONS


def test_ifname_length_limit_is_15() -> None:
    spec.validate_ifname("a" * 15)
    with pytest.raises(spec.CNIError) as err:
        spec.validate_ifname("a" * 16)
    assert "too long" in err.value.msg


@pytest.mark.parametrize("kind", ["../bridge", "/usr/lib/cni/bridge", "a/b", ".."])
def test_plugin_type_with_a_path_is_invalid_config(kind: str) -> None:
    with pytest.raises(spec.CNIError) as err:
        spec.validate_plugin_type(kind)
    assert err.value.code == spec.ERR_INVALID_CONFIG


RESULT = {"cniVersion": "1.1.0",
          "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "mtu": 1400,
                          "sandbox": "/run/netns/x"}],
          "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0},
                  {"address": "fd00::2/64", "interface": 0}],
          "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1", "priority": 5}]}


def test_result_to_0_4_0_adds_ip_versions_and_drops_new_fields() -> None:
    out = spec.convert_result(RESULT, "0.4.0")
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    assert "mtu" not in out["interfaces"][0]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]
    assert out["cniVersion"] == "0.4.0"
    assert "dns" not in out  # as libcni prints an empty DNS


def test_result_1_1_0_keeps_mtu_and_route_priority() -> None:
    out = spec.convert_result(RESULT, "1.1.0")
    assert out["interfaces"][0]["mtu"] == 1400
    assert out["routes"][0]["priority"] == 5
    assert "version" not in out["ips"][0]


def test_normalize_strips_versions_of_an_old_result() -> None:
    old = spec.convert_result(RESULT, "0.4.0")
    assert spec.normalize_result(old)["ips"] == RESULT["ips"]


def test_a_plugin_bug_still_answers_with_error_json() -> None:
    from engine.networkdriver.plugins import skel

    class Broken(hostlocal.HostLocal):
        def add(self, req: spec.Request) -> dict:
            raise KeyError("oops")

    code, out = skel.dispatch(Broken(), ENV, conf())
    assert code == 1
    body = json.loads(out)
    assert body["code"] == spec.ERR_INTERNAL and "KeyError" in body["msg"]
