"""host-local's allocation strategy: round robin over a range set, from the last reservation."""
from __future__ import annotations

from engine.networkdriver.plugins import spec
from engine.networkdriver.plugins.ipam_config import IPAddress, Range, RangeSet
from engine.networkdriver.plugins.ipam_store import DiskStore
from engine.networkdriver.plugins.ipnet import Address

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from dataclasses import dataclass
else:  # dataclasses imports inspect: see plugins/value.py
    from engine.networkdriver.plugins.value import dataclass


@dataclass(frozen=True)
class Allocation:
    ip: IPAddress
    range: Range

    def to_json(self) -> dict[str, str]:
        return {"address": f"{self.ip}/{self.range.subnet.prefixlen}",
                "gateway": str(self.range.gateway)}


def candidates(range_set: RangeSet, last: IPAddress | None) -> Iterator[tuple[IPAddress, Range]]:
    """Every address of the set once, starting after ``last`` when it lies in the set."""
    ranges = range_set.ranges
    start_idx, start_ip = 0, ranges[0].start
    if last is not None:
        for i, r in enumerate(ranges):
            if r.contains(last):
                start_idx, start_ip = i, last + 1
                if last == r.end:
                    start_idx = (i + 1) % len(ranges)
                    start_ip = ranges[start_idx].start
                break
    first = True
    for n in range(len(ranges) + 1):
        r = ranges[(start_idx + n) % len(ranges)]
        lo = start_ip if first else r.start
        hi = r.end if n != len(ranges) else start_ip - 1
        first = False
        version = r.start.version
        for value in range(int(lo), int(hi) + 1):
            ip = Address(version, value)
            if r.allocatable(ip):
                yield ip, r


class Allocator:
    def __init__(self, range_set: RangeSet, store: DiskStore, index: int) -> None:
        self.range_set = range_set
        self.store = store
        self.index = index

    def get(self, container_id: str, ifname: str,
            requested: IPAddress | None = None) -> Allocation:
        """Reserve one address; the caller holds the store lock."""
        if requested is not None:
            r = self.range_set.range_for(requested)
            if r is None:
                raise spec.CNIError(spec.ERR_INVALID_CONFIG, "requested IP is not in the range set",
                                    f"{requested} not in {self.range_set}")
            if not r.allocatable(requested):
                raise spec.CNIError(spec.ERR_INVALID_CONFIG,
                                    "requested IP is the network, gateway or broadcast address",
                                    str(requested))
            if not self.store.reserve(requested, container_id, ifname, self.index):
                raise spec.CNIError(spec.ERR_DUPLICATE_ALLOCATION,
                                    "requested IP address is not available",
                                    f"{requested} in {self.range_set}")
            return Allocation(requested, r)
        for ip in self.store.ips_of(container_id, ifname):
            if self.range_set.range_for(ip) is not None:
                raise spec.CNIError(spec.ERR_DUPLICATE_ALLOCATION,
                                    "duplicate allocation is not allowed",
                                    f"{ip} is already allocated to {container_id}/{ifname}")
        for ip, r in candidates(self.range_set, self.store.last_reserved(self.index)):
            if self.store.reserve(ip, container_id, ifname, self.index):
                return Allocation(ip, r)
        raise spec.CNIError(spec.ERR_RANGE_EXHAUSTED, "no IP addresses available in range set",
                            str(self.range_set))
