"""The bridge plugin's configuration."""
from __future__ import annotations

from collections.abc import Mapping

from engine.networkdriver.plugins import spec

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a plugin exec ~10 ms of CPU (see plugins/value.py)
    from dataclasses import dataclass
    from typing import Any
else:  # dataclasses imports inspect: see plugins/value.py
    from engine.networkdriver.plugins.value import dataclass

DEFAULT_BRIDGE = "kpy0"


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
    if not isinstance(ipam, Mapping):
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, "the bridge plugin needs an ipam section")
    ipam_type = spec.validate_plugin_type(ipam.get("type"), field="ipam.type")
    mtu = conf.get("mtu", 0)
    if not isinstance(mtu, int) or isinstance(mtu, bool) or mtu < 0 or mtu > 65535:
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, "mtu must be an integer 0..65535", repr(mtu))
    for field in ("vlan", "vlanTrunk", "preserveDefaultVlan"):
        if conf.get(field):
            raise spec.CNIError(spec.ERR_UNSUPPORTED_FIELD, f"kpy-bridge does not support {field}",
                                "VLAN tagging is not implemented; use the reference bridge")
    backend = conf.get("ipMasqBackend", "iptables")
    if backend != "iptables":
        raise spec.CNIError(spec.ERR_UNSUPPORTED_FIELD, "unsupported ipMasqBackend",
                            f"{backend!r}: kpy-bridge masquerades with iptables only")
    prev = conf.get("prevResult")
    if prev is not None and not isinstance(prev, Mapping):
        raise spec.CNIError(spec.ERR_DECODE, "prevResult must be an object")
    is_default = _bool(conf, "isDefaultGateway")
    dns = conf.get("dns") or {}
    if not isinstance(dns, Mapping):
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, "dns must be an object")
    return BridgeConfig(
        name=spec.validate_network_name(conf.get("name")), bridge=bridge, ipam_type=ipam_type,
        is_gateway=_bool(conf, "isGateway") or is_default, is_default_gateway=is_default,
        force_address=_bool(conf, "forceAddress"), ip_masq=_bool(conf, "ipMasq"), mtu=mtu,
        hairpin=_bool(conf, "hairpinMode"), promisc=_bool(conf, "promiscMode"),
        dns=dns, prev_result=prev)
