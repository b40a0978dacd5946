"""ipnet (the plugins' small IP module) agrees with the standard library's ipaddress."""
from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.networkdriver.plugins import ipnet

v4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
# IPv6 values with runs of zero groups, where the text forms differ most
v6 = st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xDB8, 0xFE80]), min_size=8,
              max_size=8).map(lambda g: str(ipaddress.IPv6Address(
                  sum(x << (112 - 16 * i) for i, x in enumerate(g)))))


@given(st.one_of(v4, v6))
def test_addresses_parse_and_print_like_ipaddress(text: str) -> None:
    ref = ipaddress.ip_address(text)
    ours = ipnet.ip_address(text)
    assert str(ours) == str(ref) and int(ours) == int(ref) and ours.packed == ref.packed
    assert ours.version == ref.version and ours.is_link_local == ref.is_link_local


@given(st.one_of(v4, v6), st.integers(0, 128))
def test_networks_and_interfaces_match_ipaddress(text: str, plen: int) -> None:
    plen = min(plen, 32 if ":" not in text else 128)
    ref = ipaddress.ip_interface(f"{text}/{plen}")
    ours = ipnet.ip_interface(f"{text}/{plen}")
    assert str(ours) == str(ref)
    assert str(ours.network) == str(ref.network)
    assert str(ours.network.broadcast_address) == str(ref.network.broadcast_address)
    assert (ours.ip in ours.network) and ours.network == ipnet.ip_network(str(ref.network))


def test_leading_zeros_scope_ids_and_garbage_are_rejected() -> None:
    for bad in ("010.0.0.1", "1.2.3", "fe80::1%eth0", "", "10.0.0.1/33", "10.0.0.1/08",
                "fd00::/129", "10.0.0.0/x"):
        with pytest.raises(ValueError):
            ipnet.ip_interface(bad)


def test_strict_networks_refuse_host_bits() -> None:
    with pytest.raises(ValueError):
        ipnet.ip_network("10.1.0.1/16")
    assert str(ipnet.ip_network("10.1.0.1/16", strict=False)) == "10.1.0.0/16"


def test_arithmetic_overlap_and_families() -> None:
    a = ipnet.ip_address("10.0.0.255")
    assert str(a + 1) == "10.0.1.0" and str(a - 255) == "10.0.0.0"
    with pytest.raises(ValueError):
        ipnet.ip_address("255.255.255.255") + 1
    assert ipnet.ip_network("10.0.0.0/8").overlaps(ipnet.ip_network("10.5.0.0/16"))
    assert not ipnet.ip_network("10.0.0.0/16").overlaps(ipnet.ip_network("10.1.0.0/16"))
    assert ipnet.ip_address("::a00:1") != ipnet.ip_address("10.0.0.1")
    assert ipnet.ip_address("10.0.0.1") not in ipnet.ip_network("::/0")


def test_values_are_immutable_and_hashable() -> None:
    a = ipnet.ip_address("10.0.0.1")
    with pytest.raises(AttributeError):
        a.value = 3  # type: ignore[misc]
    assert {a, ipnet.ip_address("10.0.0.1")} == {a}
    assert len({ipnet.ip_interface("10.0.0.1/8"), ipnet.ip_interface("10.0.0.1/16")}) == 2
