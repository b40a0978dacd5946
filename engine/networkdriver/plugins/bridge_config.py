"""The bridge plugin's configuration."""
from __future__ import annotations

from engine.networkdriver.plugins import spec

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a plugin exec ~10 ms of CPU (see plugins/value.py)
    from collections.abc import Mapping
    from dataclasses import dataclass
    from typing import Any
else:  # dataclasses imports inspect: see plugins/value.py
    from engine.networkdriver.plugins.value import dataclass

DEFAULT_BRIDGE = "kpy0"
MAX_VLAN = 4094
MASQ_BACKENDS = ("", "iptables", "nftables")


@dataclass(frozen=True)
class BridgeConfig:
    name: str
    bridge: str
    ipam_type: str
    is_gateway: bool
    is_default_gateway: bool
    force_address: bool
    ip_masq: bool
    mtu: int
    hairpin: bool
    promisc: bool
    dns: Mapping[str, Any]
    prev_result: Mapping[str, Any] | None
    vlan: int = 0  # the port's PVID, untagged; 0: none
    vlan_trunk: tuple[int, ...] = ()  # tagged VLANs of the port, sorted
    preserve_default_vlan: bool = False  # keep the bridge's default PVID on the port
    # "iptables", "nftables", or "" (not set: nftables when the kernel has it)
    ip_masq_backend: str = ""

    @property
    def vlan_filtering(self) -> bool:
        return bool(self.vlan or self.vlan_trunk)


def _bool(conf: Mapping[str, Any], key: str) -> bool:
    value = conf.get(key, False)
    if not isinstance(value, bool):
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, f"{key} must be a boolean", repr(value))
    return value


def load(conf: Mapping[str, Any]) -> BridgeConfig:
    bridge = conf.get("bridge") or DEFAULT_BRIDGE
    if not isinstance(bridge, str):
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, "bridge must be a string", repr(bridge))
    spec.validate_ifname(bridge)
    ipam = conf.get("ipam")
    if not isinstance(ipam, dict):
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, "the bridge plugin needs an ipam section")
    ipam_type = spec.validate_plugin_type(ipam.get("type"), field="ipam.type")
    mtu = conf.get("mtu", 0)
    if not isinstance(mtu, int) or isinstance(mtu, bool) or mtu < 0 or mtu > 65535:
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, "mtu must be an integer 0..65535", repr(mtu))
    backend = conf.get("ipMasqBackend") or ""
    if backend not in MASQ_BACKENDS:
        raise spec.CNIError(spec.ERR_UNSUPPORTED_FIELD, "unsupported ipMasqBackend",
                            f"{backend!r}: use \"iptables\" or \"nftables\"")
    prev = conf.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise spec.CNIError(spec.ERR_DECODE, "prevResult must be an object")
    is_default = _bool(conf, "isDefaultGateway")
    dns = conf.get("dns") or {}
    if not isinstance(dns, dict):
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, "dns must be an object")
    vlan = conf.get("vlan", 0)
    if not isinstance(vlan, int) or isinstance(vlan, bool) or not 0 <= vlan <= MAX_VLAN:
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, f"vlan must be an integer 0..{MAX_VLAN}",
                            repr(vlan))
    return BridgeConfig(
        name=spec.validate_network_name(conf.get("name")), bridge=bridge, ipam_type=ipam_type,
        is_gateway=_bool(conf, "isGateway") or is_default, is_default_gateway=is_default,
        force_address=_bool(conf, "forceAddress"), ip_masq=_bool(conf, "ipMasq"), mtu=mtu,
        hairpin=_bool(conf, "hairpinMode"), promisc=_bool(conf, "promiscMode"),
        dns=dns, prev_result=prev, vlan=vlan, vlan_trunk=vlan_trunk(conf.get("vlanTrunk")),
        preserve_default_vlan=_bool(conf, "preserveDefaultVlan"), ip_masq_backend=backend)


def _vlan_id(item: Mapping[str, Any], key: str) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_VLAN:
        raise spec.CNIError(spec.ERR_INVALID_CONFIG,
                            f"vlanTrunk {key} must be an integer 1..{MAX_VLAN}", repr(value))
    return value


def vlan_trunk(raw: object) -> tuple[int, ...]:
    """``vlanTrunk``: entries of ``{"id": n}`` and/or ``{"minID": a, "maxID": b}``, as the
    reference bridge reads them; the VLAN IDs, sorted and unique."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, "vlanTrunk must be a list", repr(raw))
    ids: set[int] = set()
    for item in raw:
        if not isinstance(item, dict):
            raise spec.CNIError(spec.ERR_INVALID_CONFIG, "a vlanTrunk entry must be an object",
                                repr(item))
        lo, hi = _vlan_id(item, "minID"), _vlan_id(item, "maxID")
        if (lo is None) != (hi is None):
            raise spec.CNIError(spec.ERR_INVALID_CONFIG,
                                "vlanTrunk minID and maxID go together", repr(item))
        if lo is not None and hi is not None:
            if hi < lo:
                raise spec.CNIError(spec.ERR_INVALID_CONFIG, "vlanTrunk minID is above maxID",
                                    repr(item))
            ids.update(range(lo, hi + 1))
        one = _vlan_id(item, "id")
        if one is not None:
            ids.add(one)
    return tuple(sorted(ids))
