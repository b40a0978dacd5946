"""Hypothesis fuzz of the plugins' configuration parsing: any JSON in any field of a bridge
or host-local configuration (or of a conflist) gets the spec's error JSON with a precise code,
never the catch-all "internal error" (999) of a Python exception."""
from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import errors
from engine.networkdriver import cniconf
from engine.networkdriver.plugins import bridge_config, ipam_config, spec

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)
    | st.sampled_from(["", "10.1.2.0/24", "10.1.2.7", "fd00::/64", "fd00::9", "0.0.0.0/0",
                       "x/y", "..", "a" * 20, "1.0.0", "kpy-host-local"]) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["subnet", "gateway", "rangeStart", "rangeEnd", "dst",
                                       "gw", "ips", "cni", "id", "minID", "maxID", "type"]),
                      children, max_size=3),
    max_leaves=8)

BASE: dict[str, Any] = {
    "cniVersion": "1.1.0", "name": "fuzz", "type": "kpy-bridge", "bridge": "kpyf0",
    "isGateway": True, "ipMasq": True, "mtu": 1400,
    "ipam": {"type": "kpy-host-local", "ranges": [[{"subnet": "10.1.2.0/24"}]],
             "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/run/kpy-fuzz-never-written"}}
TOP_KEYS = ["bridge", "isGateway", "isDefaultGateway", "forceAddress", "ipMasq", "mtu",
            "hairpinMode", "promiscMode", "vlan", "vlanTrunk", "preserveDefaultVlan",
            "ipMasqBackend", "dns", "prevResult", "runtimeConfig", "args", "ipam", "name"]
IPAM_KEYS = ["type", "subnet", "ranges", "routes", "dataDir", "gateway", "rangeStart",
             "rangeEnd", "resolvConf"]

FUZZ = settings(max_examples=150, deadline=None)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    conf = json.loads(json.dumps(BASE))
    for key in draw(st.lists(st.sampled_from(TOP_KEYS), max_size=3, unique=True)):
        conf[key] = draw(JSON)
    if isinstance(conf.get("ipam"), dict):
        for key in draw(st.lists(st.sampled_from(IPAM_KEYS), max_size=3, unique=True)):
            conf["ipam"][key] = draw(JSON)
    return conf


def _precise(run: object) -> None:
    try:
        run()  # type: ignore[operator]
    except spec.CNIError as err:
        assert err.code != spec.ERR_INTERNAL and err.msg


@FUZZ
@given(conf=configs(), ip_arg=st.sampled_from(["", "10.1.2.9", "nonsense", "fd00::3"]))
def test_host_local_config_errors_are_precise(conf: dict[str, Any], ip_arg: str) -> None:
    _precise(lambda: ipam_config.load(conf, {"IP": ip_arg} if ip_arg else {}))


@FUZZ
@given(conf=configs())
def test_bridge_config_errors_are_precise(conf: dict[str, Any]) -> None:
    _precise(lambda: bridge_config.load(conf))


@pytest.mark.parametrize(("field", "value"), [
    ("routes", 5), ("routes", "0.0.0.0/0"), ("ranges", 7), ("ranges", [5]),
])
def test_non_list_ipam_fields_are_invalid_config(field: str, value: object) -> None:
    conf = json.loads(json.dumps(BASE))
    conf["ipam"][field] = value
    with pytest.raises(spec.CNIError) as err:
        ipam_config.load(conf, {})
    assert err.value.code == spec.ERR_INVALID_CONFIG


@pytest.mark.parametrize("runtime_config", [{"ips": 5}, {"ips": "10.1.2.3"}, {"ipRanges": [7]}])
def test_bad_runtime_config_is_invalid_config(runtime_config: dict[str, Any]) -> None:
    conf = {**json.loads(json.dumps(BASE)), "runtimeConfig": runtime_config}
    with pytest.raises(spec.CNIError) as err:
        ipam_config.load(conf, {})
    assert err.value.code == spec.ERR_INVALID_CONFIG


@FUZZ
@given(body=st.dictionaries(st.sampled_from(["cniVersion", "cniVersions", "name", "plugins",
                                             "disableCheck", "disableGC"]), JSON, max_size=5))
def test_conflist_errors_are_engine_errors(body: dict[str, Any]) -> None:
    with contextlib.suppress(errors.EngineError):  # anything else fails the test
        cniconf.parse(json.dumps(body).encode())


RESULT_KEYS = ["cniVersion", "interfaces", "ips", "routes", "dns"]


@FUZZ
@given(result=st.dictionaries(st.sampled_from(RESULT_KEYS), JSON, max_size=4),
       version=st.sampled_from(spec.SUPPORTED_VERSIONS))
def test_prev_result_errors_are_precise(result: dict[str, Any], version: str) -> None:
    """A prevResult (a runtime's cache, or another plugin's answer) of any shape."""
    _precise(lambda: spec.convert_result(spec.normalize_result(result), version))


@pytest.mark.parametrize("result", [
    {"ips": 5}, {"ips": [{"address": "10.0.0.300/24"}]},
    {"ips": [{"address": "10.0.0.3/24", "gateway": "nope"}]}, {"interfaces": ["eth0"]},
    {"routes": [{"gw": "10.0.0.1"}]}, {"dns": ["8.8.8.8"]},
])
def test_a_malformed_prev_result_is_a_decode_error(result: dict[str, Any]) -> None:
    with pytest.raises(spec.CNIError) as err:
        spec.normalize_result(result)
    assert err.value.code == spec.ERR_DECODE
