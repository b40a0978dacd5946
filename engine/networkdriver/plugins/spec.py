"""CNI specification facts: versions, error codes, the request, results between versions."""
from __future__ import annotations

from engine.networkdriver.plugins import ipnet, jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a plugin exec ~10 ms of CPU (see plugins/value.py)
    from collections.abc import Mapping
    from dataclasses import dataclass, field
    from typing import Any
else:  # dataclasses imports inspect: see plugins/value.py
    from engine.networkdriver.plugins.value import dataclass, field

SPEC_VERSION = "1.1.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

# Well-known error codes of the specification (1-99 are reserved for these).
ERR_INCOMPATIBLE_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_DECODE = 6
ERR_INVALID_CONFIG = 7
ERR_TRY_AGAIN_LATER = 11
ERR_PLUGIN_NOT_AVAILABLE = 50
ERR_LIMITED_CONNECTIVITY = 51
# Plugin-specific codes of the kpy plugins (100 and above).
ERR_RANGE_EXHAUSTED = 100
ERR_DUPLICATE_ALLOCATION = 101
ERR_ADDRESS_CONFLICT = 102
ERR_NETLINK = 103
ERR_FIREWALL = 104
ERR_CHECK_FAILED = 105
ERR_INTERNAL = 999  # what libcni's skel uses for an error that carries no code

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")
IFNAMSIZ = 16
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")


def _is_name(value: str) -> bool:
    """``[a-zA-Z0-9][a-zA-Z0-9_.-]*``: container IDs and network names (no ``re``: see
    plugins/value.py on exec start-up)."""
    return bool(value) and value[0] in _ALNUM and _NAME_CHARS.issuperset(value)


class CNIError(Exception):
    """An error a plugin reports as the spec's error JSON on stdout."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(f"{msg}: {details}" if details else msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def version_tuple(version: str) -> tuple[int, int, int]:
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise CNIError(ERR_INCOMPATIBLE_VERSION, "malformed cniVersion", repr(version))
    return int(parts[0]), int(parts[1]), int(parts[2])


def check_version(version: object) -> str:
    if not isinstance(version, str) or not version:
        raise CNIError(ERR_INVALID_CONFIG, "cniVersion missing from the network configuration")
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(ERR_INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f"config is {version!r}, plugin supports {list(SUPPORTED_VERSIONS)}")
    return version


def version_info() -> dict[str, Any]:
    return {"cniVersion": SPEC_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}


def validate_container_id(container_id: str) -> None:
    if not container_id:
        raise CNIError(ERR_INVALID_ENV, "required env variable CNI_CONTAINERID is missing")
    if not _is_name(container_id):
        raise CNIError(ERR_INVALID_ENV, "invalid characters in CNI_CONTAINERID",
                       repr(container_id))


def validate_ifname(ifname: str) -> None:
    if not ifname:
        raise CNIError(ERR_INVALID_ENV, "required env variable CNI_IFNAME is missing")
    if len(ifname) >= IFNAMSIZ:
        raise CNIError(ERR_INVALID_ENV, "interface name is too long",
                       f"{ifname!r} has {len(ifname)} characters, the limit is {IFNAMSIZ - 1}")
    if ifname in (".", "..") or any(c in ifname for c in "/:") or any(c.isspace() for c in ifname):
        raise CNIError(ERR_INVALID_ENV, "invalid interface name", repr(ifname))


def validate_network_name(name: object) -> str:
    if not isinstance(name, str) or not _is_name(name):
        raise CNIError(ERR_INVALID_CONFIG, "invalid network name", repr(name))
    return name


def validate_plugin_type(kind: object, *, field: str = "type") -> str:
    if not isinstance(kind, str) or not kind:
        raise CNIError(ERR_INVALID_CONFIG, f"{field} missing from the network configuration")
    if "/" in kind or kind in (".", "..") or "\x00" in kind:
        raise CNIError(ERR_INVALID_CONFIG, f"{field} must be a plugin name, not a path", repr(kind))
    return kind


def parse_cni_args(raw: str) -> dict[str, str]:
    """CNI_ARGS: ``KEY=VALUE`` pairs separated by ``;``."""
    out: dict[str, str] = {}
    if not raw:
        return out
    for pair in raw.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CNIError(ERR_INVALID_ENV, "malformed CNI_ARGS", f"pair {pair!r} is not KEY=VALUE")
        out[key] = value
    return out


@dataclass(frozen=True)
class Request:
    """One plugin invocation: the CNI_* environment and the decoded configuration."""

    command: str
    container_id: str
    netns: str
    ifname: str
    args: Mapping[str, str]
    path: tuple[str, ...]
    stdin: bytes
    config: Mapping[str, Any]
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def cni_version(self) -> str:
        return str(self.config.get("cniVersion", SPEC_VERSION))


def decode_config(stdin: bytes) -> dict[str, Any]:
    try:
        conf = jsonio.loads(stdin)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CNIError(ERR_DECODE, "failed to decode the network configuration", str(exc)) from exc
    if not isinstance(conf, dict):
        raise CNIError(ERR_DECODE, "network configuration must be a JSON object")
    return conf


def parse_request(env: Mapping[str, str], stdin: bytes) -> Request:
    """Validate the environment and the configuration the way the spec asks."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CNIError(ERR_INVALID_ENV, "required env variable CNI_COMMAND is missing")
    if command not in COMMANDS:
        raise CNIError(ERR_INVALID_ENV, "unknown CNI_COMMAND", repr(command))
    path = tuple(p for p in env.get("CNI_PATH", "").split(":") if p)
    if command == "VERSION":
        return Request(command=command, container_id="", netns="", ifname="", args={},
                       path=path, stdin=stdin, config={}, env=env)
    conf = decode_config(stdin)
    version = check_version(conf.get("cniVersion"))
    validate_network_name(conf.get("name"))
    if command in ("ADD", "DEL", "CHECK"):
        validate_container_id(env.get("CNI_CONTAINERID", ""))
        validate_ifname(env.get("CNI_IFNAME", ""))
        if command != "DEL" and not env.get("CNI_NETNS"):
            raise CNIError(ERR_INVALID_ENV, "required env variable CNI_NETNS is missing")
    if command == "CHECK" and version_tuple(version) < (0, 4, 0):
        raise CNIError(ERR_INCOMPATIBLE_VERSION, "CHECK needs cniVersion 0.4.0 or later",
                       f"config is {version}")
    if command in ("GC", "STATUS") and version_tuple(version) < (1, 1, 0):
        raise CNIError(ERR_INCOMPATIBLE_VERSION, f"{command} needs cniVersion 1.1.0 or later",
                       f"config is {version}")
    if command != "STATUS" and not path:
        raise CNIError(ERR_INVALID_ENV, "required env variable CNI_PATH is missing")
    return Request(command=command, container_id=env.get("CNI_CONTAINERID", ""),
                   netns=env.get("CNI_NETNS", ""), ifname=env.get("CNI_IFNAME", ""),
                   args=parse_cni_args(env.get("CNI_ARGS", "")), path=path, stdin=stdin,
                   config=conf, env=env)


# ---- results -------------------------------------------------------------------------------
_IFACE_FIELDS_1_0 = ("name", "mac", "sandbox")
_IFACE_FIELDS_1_1 = ("name", "mac", "mtu", "sandbox", "socketPath", "pciID")
_ROUTE_FIELDS_1_0 = ("dst", "gw")
_ROUTE_FIELDS_1_1 = ("dst", "gw", "mtu", "advmss", "priority", "table", "scope")


def normalize_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """Any supported result version to the internal form (1.1.0 shape, no ``version`` keys)."""
    if not isinstance(result, dict):
        raise CNIError(ERR_DECODE, "result must be a JSON object")
    out: dict[str, Any] = {"cniVersion": SPEC_VERSION}
    if "interfaces" in result:
        out["interfaces"] = [dict(i) for i in _objects(result, "interfaces")]
    ips = []
    for ip in _objects(result, "ips"):
        if not isinstance(ip.get("address"), str):
            raise CNIError(ERR_DECODE, "result ips entry without an address", repr(ip))
        try:
            ipnet.ip_interface(ip["address"])
            if ip.get("gateway") is not None:
                ipnet.ip_address(ip["gateway"])
        except (ValueError, TypeError) as exc:
            raise CNIError(ERR_DECODE, "result ips entry is not an address", str(exc)) from exc
        ips.append({k: v for k, v in ip.items() if k != "version"})
    out["ips"] = ips
    if result.get("routes"):
        routes = _objects(result, "routes")
        if not all(isinstance(r.get("dst"), str) for r in routes):
            raise CNIError(ERR_DECODE, "result routes entry without a dst", repr(routes))
        out["routes"] = [dict(r) for r in routes]
    if result.get("dns"):
        if not isinstance(result["dns"], dict):
            raise CNIError(ERR_DECODE, "result dns must be a JSON object", repr(result["dns"]))
        out["dns"] = dict(result["dns"])
    return out


def _objects(result: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """``result[key]``: a list of JSON objects (absent or null: empty)."""
    items = result.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise CNIError(ERR_DECODE, f"result {key} must be a list of JSON objects", repr(items))
    return items


def convert_result(result: Mapping[str, Any], version: str) -> dict[str, Any]:
    """The internal form to the result format of ``version``."""
    vt = version_tuple(version)
    iface_fields = _IFACE_FIELDS_1_1 if vt >= (1, 1, 0) else _IFACE_FIELDS_1_0
    route_fields = _ROUTE_FIELDS_1_1 if vt >= (1, 1, 0) else _ROUTE_FIELDS_1_0
    out: dict[str, Any] = {"cniVersion": version}
    if "interfaces" in result:
        out["interfaces"] = [{k: i[k] for k in iface_fields if k in i}
                             for i in result["interfaces"]]
    ips = []
    for ip in result.get("ips", []):
        entry = dict(ip)
        if vt < (1, 0, 0):
            entry = {"version": "6" if ":" in entry["address"] else "4", **entry}
        ips.append(entry)
    out["ips"] = ips
    if result.get("routes"):
        out["routes"] = [{k: r[k] for k in route_fields if k in r} for r in result["routes"]]
    if result.get("dns"):
        out["dns"] = dict(result["dns"])
    return out
