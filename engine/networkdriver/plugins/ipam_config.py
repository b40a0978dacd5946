"""host-local IPAM configuration: range sets, routes, requested IPs, data dir."""
from __future__ import annotations

from engine.networkdriver.plugins import ipnet, spec

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a plugin exec ~10 ms of CPU (see plugins/value.py)
    from collections.abc import Mapping
    from dataclasses import dataclass
    from typing import Any
else:  # dataclasses imports inspect: see plugins/value.py
    from engine.networkdriver.plugins.value import dataclass

IPAddress = ipnet.Address
IPNetwork = ipnet.Network

DEFAULT_DATA_DIR = "/var/lib/cni/networks"


@dataclass(frozen=True)
class Range:
    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: IPAddress

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.start.version and int(self.start) <= int(ip) <= int(self.end)

    def allocatable(self, ip: IPAddress) -> bool:
        """Never the network, gateway or (IPv4) broadcast address."""
        if ip in (self.gateway, self.subnet.network_address):
            return False
        return not (ip.version == 4 and ip == self.subnet.broadcast_address)


@dataclass(frozen=True)
class RangeSet:
    ranges: tuple[Range, ...]

    def range_for(self, ip: IPAddress) -> Range | None:
        return next((r for r in self.ranges if r.contains(ip)), None)

    def __str__(self) -> str:
        return ",".join(f"{r.start}-{r.end}" for r in self.ranges)


@dataclass(frozen=True)
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None

    def to_json(self) -> dict[str, str]:
        out = {"dst": str(self.dst)}
        if self.gw is not None:
            out["gw"] = str(self.gw)
        return out


@dataclass(frozen=True)
class IPAMConfig:
    name: str
    range_sets: tuple[RangeSet, ...]
    routes: tuple[Route, ...]
    data_dir: str
    resolv_conf: str
    requested: tuple[IPAddress, ...]


def _err(msg: str, details: str = "") -> spec.CNIError:
    return spec.CNIError(spec.ERR_INVALID_CONFIG, msg, details)


def parse_ip(value: object, what: str) -> IPAddress:
    if not isinstance(value, str):
        raise _err(f"{what} must be an IP address string", repr(value))
    try:
        return ipnet.ip_address(value)
    except ValueError as exc:
        raise _err(f"invalid {what}", str(exc)) from exc


def parse_net(value: object, what: str, *, strict: bool = False) -> IPNetwork:
    if not isinstance(value, str):
        raise _err(f"{what} must be a CIDR string", repr(value))
    try:
        return ipnet.ip_network(value, strict=strict)
    except ValueError as exc:
        raise _err(f"invalid {what}", str(exc)) from exc


_PARSED: dict[tuple[str | None, ...], Range] = {}
_PARSED_MAX = 64


def parse_range(raw: object) -> Range:
    """A range, remembered by its four fields while they are strings (or absent): the
    engine runs every ADD and DEL of a network in one process on the same ranges, and a
    Range is immutable."""
    if not isinstance(raw, dict):
        raise _err("a range must be an object", repr(raw))
    key = (raw.get("subnet"), raw.get("gateway"), raw.get("rangeStart"), raw.get("rangeEnd"))
    if not all(v is None or type(v) is str for v in key):
        return _parse_range(raw)
    found = _PARSED.get(key)
    if found is None:
        found = _parse_range(raw)  # a bad range raises: only good ones are remembered
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = found
    return found


def _parse_range(raw: dict[str, Any]) -> Range:
    subnet = parse_net(raw.get("subnet"), "subnet")
    if subnet.prefixlen > subnet.max_prefixlen - 2:
        raise _err("network too small to allocate from", str(subnet))
    first = subnet.network_address + 1
    last = subnet.broadcast_address - 1 if subnet.version == 4 else subnet.broadcast_address
    gateway = parse_ip(raw["gateway"], "gateway") if raw.get("gateway") else first
    if gateway not in subnet:
        raise _err("gateway not in network", f"{gateway} not in {subnet}")
    start = parse_ip(raw["rangeStart"], "rangeStart") if raw.get("rangeStart") else first
    end = parse_ip(raw["rangeEnd"], "rangeEnd") if raw.get("rangeEnd") else last
    for ip, what in ((start, "rangeStart"), (end, "rangeEnd")):
        if ip not in subnet:
            raise _err(f"{what} not in network", f"{ip} not in {subnet}")
    if int(end) < int(start):
        raise _err("rangeEnd before rangeStart", f"{start}-{end}")
    return Range(subnet=subnet, start=start, end=end, gateway=gateway)


def parse_range_set(raw: object) -> RangeSet:
    if not isinstance(raw, list) or not raw:
        raise _err("a range set must be a non-empty list of ranges", repr(raw))
    ranges = tuple(parse_range(r) for r in raw)
    if len({r.subnet.version for r in ranges}) != 1:
        raise _err("a range set mixes IPv4 and IPv6")
    return RangeSet(ranges)


def _overlap(a: Range, b: Range) -> bool:
    return (a.start.version == b.start.version and int(a.start) <= int(b.end)
            and int(b.start) <= int(a.end))


def _list(value: object, what: str) -> list[Any]:
    """An optional list field: absent or null is empty, anything else must be a list."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _err(f"{what} must be a list", repr(value))
    return value


def _requested_ips(conf: Mapping[str, Any], cni_args: Mapping[str, str]) -> list[IPAddress]:
    out: list[IPAddress] = []
    if cni_args.get("IP"):
        out.append(parse_ip(cni_args["IP"], "CNI_ARGS IP"))
    args = conf.get("args")
    if isinstance(args, dict) and isinstance(args.get("cni"), dict):
        out += [parse_ip(ip, "args.cni.ips")
                for ip in _list(args["cni"].get("ips"), "args.cni.ips")]
    runtime = conf.get("runtimeConfig")
    if isinstance(runtime, dict):
        for ip in _list(runtime.get("ips"), "runtimeConfig.ips"):
            text = ip.split("/")[0] if isinstance(ip, str) else ip
            out.append(parse_ip(text, "runtimeConfig.ips"))
    return out


def load(conf: Mapping[str, Any], cni_args: Mapping[str, str]) -> IPAMConfig:
    """The IPAM view of a full network configuration (IPAM gets the whole config)."""
    ipam = conf.get("ipam")
    if not isinstance(ipam, dict):
        raise _err("IPAM config missing 'ipam' key")
    sets: list[RangeSet] = []
    runtime = conf.get("runtimeConfig")
    if isinstance(runtime, dict) and runtime.get("ipRanges"):
        raw_sets = runtime["ipRanges"]
        if not isinstance(raw_sets, list):
            raise _err("runtimeConfig.ipRanges must be a list of range sets")
        sets += [parse_range_set(s) for s in raw_sets]
    if ipam.get("subnet"):
        sets.append(parse_range_set([ipam]))
    raw_ranges = ipam.get("ranges") or []
    if not isinstance(raw_ranges, list):
        raise _err("ipam.ranges must be a list of range sets")
    sets += [parse_range_set(s) for s in raw_ranges]
    if not sets:
        raise _err("no IP ranges specified",
                   "set ipam.subnet, ipam.ranges, or pass runtimeConfig.ipRanges")
    flat = [(i, r) for i, s in enumerate(sets) for r in s.ranges]
    for n, (i, a) in enumerate(flat):
        for j, b in flat[n + 1:]:
            if _overlap(a, b):
                raise _err("range sets overlap", f"range set {i} overlaps with {j}")
    routes = []
    for r in _list(ipam.get("routes"), "ipam.routes"):
        if not isinstance(r, dict):
            raise _err("a route must be an object", repr(r))
        gw = parse_ip(r["gw"], "route gw") if r.get("gw") else None
        routes.append(Route(dst=parse_net(r.get("dst"), "route dst"), gw=gw))
    data_dir = ipam.get("dataDir") or DEFAULT_DATA_DIR
    if not isinstance(data_dir, str):
        raise _err("ipam.dataDir must be a string")
    resolv = ipam.get("resolvConf") or ""
    return IPAMConfig(name=spec.validate_network_name(conf.get("name")), range_sets=tuple(sets),
                      routes=tuple(routes), data_dir=data_dir, resolv_conf=str(resolv),
                      requested=tuple(_requested_ips(conf, cni_args)))
