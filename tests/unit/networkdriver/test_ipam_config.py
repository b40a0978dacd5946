from __future__ import annotations

import pytest

from engine.networkdriver.plugins import ipam_config, ipnet, spec


def conf(ipam: dict, **extra: object) -> dict:
    return {"cniVersion": "1.0.0", "name": "net1", "ipam": {"type": "kpy-host-local", **ipam},
            **extra}


def test_defaults_of_an_ipv4_range_skip_network_and_broadcast() -> None:
    c = ipam_config.load(conf({"subnet": "10.1.2.0/24"}), {})
    (r,) = c.range_sets[0].ranges
    assert (str(r.start), str(r.end), str(r.gateway)) == ("10.1.2.1", "10.1.2.254", "10.1.2.1")
    assert c.data_dir == "/var/lib/cni/networks"


def test_ipv6_range_ends_at_the_last_address() -> None:
    c = ipam_config.load(conf({"ranges": [[{"subnet": "fd00:1::/120"}]]}), {})
    r = c.range_sets[0].ranges[0]
    assert str(r.end) == "fd00:1::ff"
    assert not r.allocatable(ipnet.ip_address("fd00:1::"))


def test_several_range_sets_in_order_and_ip_ranges_first() -> None:
    c = ipam_config.load(conf({"ranges": [[{"subnet": "10.5.0.0/24"}], [{"subnet": "fd05::/64"}]]},
                              runtimeConfig={"ipRanges": [[{"subnet": "10.9.0.0/24"}]]}), {})
    assert [str(s.ranges[0].subnet) for s in c.range_sets] == ["10.9.0.0/24", "10.5.0.0/24",
                                                                "fd05::/64"]


def test_range_start_end_gateway_and_routes() -> None:
    c = ipam_config.load(conf({"subnet": "10.1.0.0/16", "rangeStart": "10.1.5.10",
                               "rangeEnd": "10.1.5.20", "gateway": "10.1.0.254",
                               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.8.0.0/16",
                                                                  "gw": "10.1.0.9"}]}), {})
    r = c.range_sets[0].ranges[0]
    assert (str(r.start), str(r.end), str(r.gateway)) == ("10.1.5.10", "10.1.5.20", "10.1.0.254")
    assert [x.to_json() for x in c.routes] == [{"dst": "0.0.0.0/0"},
                                               {"dst": "10.8.0.0/16", "gw": "10.1.0.9"}]


@pytest.mark.parametrize("ipam, needle", [
    ({}, "no IP ranges"),
    ({"subnet": "10.0.0.0/31"}, "too small"),
    ({"subnet": "10.0.0.0/24", "gateway": "10.0.1.1"}, "gateway not in network"),
    ({"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.1"}, "rangeStart not in network"),
    ({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.9", "rangeEnd": "10.0.0.3"}, "before"),
    ({"subnet": "nonsense"}, "invalid subnet"),
    ({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.128/25"}]]}, "overlap"),
    ({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}, "mixes"),
])
def test_invalid_configs_are_error_7(ipam: dict, needle: str) -> None:
    with pytest.raises(spec.CNIError) as err:
        ipam_config.load(conf(ipam), {})
    assert err.value.code == spec.ERR_INVALID_CONFIG
    assert needle in str(err.value)


def test_requested_ips_from_cni_args_args_and_runtime_config() -> None:
    c = ipam_config.load(conf({"subnet": "10.0.0.0/24"}, args={"cni": {"ips": ["10.0.0.7"]}},
                              runtimeConfig={"ips": ["10.0.0.8/24"]}), {"IP": "10.0.0.6"})
    assert [str(i) for i in c.requested] == ["10.0.0.6", "10.0.0.7", "10.0.0.8"]


def test_missing_ipam_section() -> None:
    with pytest.raises(spec.CNIError) as err:
        ipam_config.load({"name": "n"}, {})
    assert err.value.code == spec.ERR_INVALID_CONFIG
