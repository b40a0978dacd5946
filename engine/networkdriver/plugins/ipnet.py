"""IP addresses, networks and interface addresses for the plugin exec path, without
``ipaddress``.

``ipaddress`` imports functools, collections, operator and more: 5-12 ms of CPU in every
plugin exec on this project's machines, more than half of what a reference plugin spends in
total. The plugins need little of it: parse, print, a little arithmetic and containment.
Parsing is ``inet_pton`` (which, like ``ipaddress``, rejects IPv4 octets with leading zeros);
printing follows RFC 5952 (lower case, the longest run of two or more zero groups
compressed, the first of equal runs), which is what ``ipaddress`` and Go's ``net.IP`` print,
so host-local's file names (one per address) match the reference plugin's.

Values are immutable and hashable; addresses of different families never compare equal.
"""
from __future__ import annotations

import _socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_FAMILY = {4: _socket.AF_INET, 6: _socket.AF_INET6}
_BITS = {4: 32, 6: 128}


def _frozen(self: object, name: str, value: object) -> None:
    raise AttributeError(f"{type(self).__name__} is immutable")


class Address:
    """One IPv4 or IPv6 address."""

    __slots__ = ("value", "version")
    version: int
    value: int

    def __init__(self, version: int, value: int) -> None:
        if version not in _BITS or not 0 <= value < 1 << _BITS[version]:
            raise ValueError(f"not an IPv{version} address value: {value!r}")
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "value", value)

    __setattr__ = _frozen

    @property
    def max_prefixlen(self) -> int:
        return _BITS[self.version]

    @property
    def packed(self) -> bytes:
        return self.value.to_bytes(self.max_prefixlen // 8, "big")

    @property
    def is_link_local(self) -> bool:
        if self.version == 4:
            return self.value >> 16 == 0xA9FE  # 169.254.0.0/16
        return self.value >> 118 == 0x3FA  # fe80::/10

    def __int__(self) -> int:
        return self.value

    def __add__(self, n: int) -> Address:
        return Address(self.version, self.value + n)

    def __sub__(self, n: int) -> Address:
        return Address(self.version, self.value - n)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Address):
            return NotImplemented
        return self.version == other.version and self.value == other.value

    def __lt__(self, other: Address) -> bool:
        return (self.version, self.value) < (other.version, other.value)

    def __hash__(self) -> int:
        return hash((self.version, self.value))

    def __str__(self) -> str:
        if self.version == 4:
            return _socket.inet_ntop(_socket.AF_INET, self.packed)
        return _format6(self.value)

    def __repr__(self) -> str:
        return f"Address({str(self)!r})"


class Network:
    """An IP network: the network address (host bits zero) and the prefix length."""

    __slots__ = ("network_address", "prefixlen")
    network_address: Address
    prefixlen: int

    def __init__(self, address: Address, prefixlen: int, *, strict: bool = True) -> None:
        bits = address.max_prefixlen
        if not 0 <= prefixlen <= bits:
            raise ValueError(f"prefix length {prefixlen} out of range for IPv{address.version}")
        host = (1 << (bits - prefixlen)) - 1
        if strict and address.value & host:
            raise ValueError(f"{address}/{prefixlen} has host bits set")
        object.__setattr__(self, "network_address", Address(address.version,
                                                            address.value & ~host))
        object.__setattr__(self, "prefixlen", prefixlen)

    __setattr__ = _frozen

    @property
    def version(self) -> int:
        return self.network_address.version

    @property
    def max_prefixlen(self) -> int:
        return self.network_address.max_prefixlen

    @property
    def broadcast_address(self) -> Address:
        host = (1 << (self.max_prefixlen - self.prefixlen)) - 1
        return Address(self.version, self.network_address.value | host)

    def __contains__(self, ip: object) -> bool:
        return (isinstance(ip, Address) and ip.version == self.version
                and self.network_address.value <= ip.value <= self.broadcast_address.value)

    def overlaps(self, other: Network) -> bool:
        return (self.version == other.version
                and self.network_address.value <= other.broadcast_address.value
                and other.network_address.value <= self.broadcast_address.value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Network):
            return NotImplemented
        return (self.network_address, self.prefixlen) == (other.network_address, other.prefixlen)

    def __hash__(self) -> int:
        return hash((self.network_address, self.prefixlen))

    def __str__(self) -> str:
        return f"{self.network_address}/{self.prefixlen}"

    def __repr__(self) -> str:
        return f"Network({str(self)!r})"


class Interface:
    """An address with its prefix length, as set on an interface (``10.1.0.5/16``)."""

    __slots__ = ("ip", "network")
    ip: Address
    network: Network

    def __init__(self, ip: Address, prefixlen: int) -> None:
        object.__setattr__(self, "ip", ip)
        object.__setattr__(self, "network", Network(ip, prefixlen, strict=False))

    __setattr__ = _frozen

    @property
    def version(self) -> int:
        return self.ip.version

    @property
    def max_prefixlen(self) -> int:
        return self.ip.max_prefixlen

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Interface):
            return NotImplemented
        return self.ip == other.ip and self.network.prefixlen == other.network.prefixlen

    def __hash__(self) -> int:
        return hash((self.ip, self.network.prefixlen))

    def __str__(self) -> str:
        return f"{self.ip}/{self.network.prefixlen}"

    def __repr__(self) -> str:
        return f"Interface({str(self)!r})"


# Parsed values by their text: immutable, so shared. The engine parses the same few
# addresses (gateways, subnets, the addresses it hands out) on every ADD and DEL.
_MEMO_MAX = 1024
_ADDRESSES: dict[str, Address] = {}
_NETWORKS: dict[tuple[str, bool], Network] = {}
_INTERFACES: dict[str, Interface] = {}


def _remember(memo: dict[Any, Any], key: object, value: object) -> None:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = value


def ip_address(text: str) -> Address:
    """``10.0.0.1`` or ``fd00::1``; ValueError otherwise."""
    found = _ADDRESSES.get(text) if type(text) is str else None
    if found is None:
        found = _parse_address(text)
        _remember(_ADDRESSES, text, found)
    return found


def _parse_address(text: str) -> Address:
    if not isinstance(text, str):
        raise ValueError(f"not an IP address: {text!r}")
    version = 6 if ":" in text else 4
    try:
        raw = _socket.inet_pton(_FAMILY[version], text)
    except (OSError, ValueError):
        raise ValueError(f"{text!r} does not appear to be an IPv{version} address") from None
    return Address(version, int.from_bytes(raw, "big"))


def _split(text: str) -> tuple[Address, int]:
    if not isinstance(text, str):
        raise ValueError(f"not a CIDR: {text!r}")
    addr, sep, plen = text.partition("/")
    ip = ip_address(addr)
    if not sep:
        return ip, ip.max_prefixlen
    if not plen.isdigit() or not plen.isascii() or (len(plen) > 1 and plen[0] == "0"):
        raise ValueError(f"invalid prefix length in {text!r}")
    prefixlen = int(plen)
    if prefixlen > ip.max_prefixlen:
        raise ValueError(f"prefix length {prefixlen} out of range in {text!r}")
    return ip, prefixlen


def ip_network(text: str, *, strict: bool = True) -> Network:
    """``10.1.0.0/16`` (strict: no host bits); a bare address is a /32 or /128."""
    key = (text, strict)
    found = _NETWORKS.get(key) if type(text) is str else None
    if found is None:
        ip, prefixlen = _split(text)
        found = Network(ip, prefixlen, strict=strict)
        _remember(_NETWORKS, key, found)
    return found


def ip_interface(text: str) -> Interface:
    """``10.1.0.5/16``; a bare address is a /32 or /128."""
    found = _INTERFACES.get(text) if type(text) is str else None
    if found is None:
        ip, prefixlen = _split(text)
        found = Interface(ip, prefixlen)
        _remember(_INTERFACES, text, found)
    return found


def _format6(value: int) -> str:
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best, best_len, run, run_len = -1, 0, -1, 0
    for i, g in enumerate(groups):
        if g == 0:
            if run < 0:
                run, run_len = i, 0
            run_len += 1
            if run_len > best_len:
                best, best_len = run, run_len
        else:
            run = -1
    text = [f"{g:x}" for g in groups]
    if best_len < 2:
        return ":".join(text)
    return ":".join(text[:best]) + "::" + ":".join(text[best + best_len:])
