"""The plugin exec path stays lean: what a plugin exec imports, and the small modules that
replace heavy ones on it (netlink packing, JSON, frozen values, spawning a helper)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.networkdriver.plugins import (
    bridge_link,
    install,
    invoke,
    ipnet,
    jsonio,
    netlink,
    spawn,
    spec,
)
from engine.networkdriver.plugins.bridge_config import BridgeConfig
from engine.networkdriver.plugins.ipam_config import Route
from engine.networkdriver.plugins.value import FrozenInstanceError

REPO = Path(__file__).resolve().parents[3]
# each costs a plugin exec milliseconds of CPU; none is needed to ADD or DEL
HEAVY = ("typing", "dataclasses", "inspect", "logging", "subprocess", "json", "re", "ipaddress",
         "contextlib", "asyncio", "pyroute2", "ctypes", "importlib.util", "hashlib", "threading")


def imported_by(*modules: str) -> set[str]:
    code = (f"import sys; sys.path[:0] = [{str(REPO)!r}]\n"
            + "".join(f"import {m}\n" for m in modules)
            + "print('\\n'.join(sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


def test_a_plugin_exec_imports_nothing_heavy() -> None:
    loaded = imported_by("engine.networkdriver.plugins.bridge",
                         "engine.networkdriver.plugins.hostlocal",
                         "engine.networkdriver.plugins.loopback")
    assert sorted(m for m in HEAVY if m in loaded) == []


def test_masquerade_imports_no_subprocess() -> None:
    loaded = imported_by("engine.networkdriver.plugins.masq")
    assert "subprocess" not in loaded and "re" not in loaded


def test_nftables_masquerade_imports_nothing_heavy() -> None:
    loaded = imported_by("engine.networkdriver.plugins.masq_nft")
    assert sorted(m for m in HEAVY if m in loaded) == []


def test_the_installed_wrapper_runs_without_site(tmp_path: Path) -> None:
    [path, *_] = install.install(tmp_path)
    first = path.read_text().splitlines()[0]
    assert first == f"#!{sys.executable} -IS"
    env = {"CNI_COMMAND": "VERSION", "PATH": os.environ.get("PATH", "")}
    proc = subprocess.run([str(path)], env=env, capture_output=True, check=True)
    assert json.loads(proc.stdout)["supportedVersions"] == list(spec.SUPPORTED_VERSIONS)


def test_auto_picks_a_same_version_interpreter_that_runs_the_plugins(tmp_path: Path) -> None:
    python = install.fastest_python()
    assert python in install.candidates()
    check = "import sys; print(sys.version_info[:2])"
    out = subprocess.run([python, "-IS", "-c", check], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == str(tuple(sys.version_info[:2]))
    [path, *_] = install.install(tmp_path, python=python)
    assert path.read_text().splitlines()[0] == f"#!{python} -IS"
    proc = subprocess.run([str(path)], env={"CNI_COMMAND": "VERSION"}, capture_output=True,
                          check=True)
    assert json.loads(proc.stdout)["cniVersion"] == spec.SPEC_VERSION


# ---- netlink packing ---------------------------------------------------------------------------
def test_attributes_are_padded_and_round_trip() -> None:
    raw = netlink.attr_str(netlink.IFLA_IFNAME, "eth0") + netlink.attr_u32(netlink.IFLA_MTU, 1400)
    assert len(raw) == 12 + 8  # "eth0\0" is 5 bytes: 4 + 5 padded to 12
    assert list(netlink.attrs(raw, 0, len(raw))) == [
        (netlink.IFLA_IFNAME, b"eth0\0"), (netlink.IFLA_MTU, (1400).to_bytes(4, sys.byteorder))]


def test_a_link_message_decodes_like_the_kernel_sends_it() -> None:
    info = netlink.attr_str(netlink.IFLA_INFO_KIND, "veth")
    body = (netlink.ifinfo(7, flags=netlink.IFF_UP) + netlink.attr_str(netlink.IFLA_IFNAME, "v0")
            + netlink.attr_mac(netlink.IFLA_ADDRESS, "02:aa:bb:cc:dd:ee")
            + netlink.attr_u32(netlink.IFLA_MASTER, 3)
            + netlink.attr(netlink.IFLA_LINKINFO | netlink.NLA_F_NESTED, info))
    msg = netlink.decode_link(bytes(16) + body)
    assert msg == {"index": 7, "flags": netlink.IFF_UP, "change": 0, "IFLA_IFNAME": "v0",
                   "IFLA_ADDRESS": "02:aa:bb:cc:dd:ee", "IFLA_MASTER": 3,
                   "IFLA_LINKINFO": {"IFLA_INFO_KIND": "veth"}}


def test_an_address_message_decodes_both_families() -> None:
    import struct

    for family, text in ((socket.AF_INET, "10.0.0.5"), (socket.AF_INET6, "fd00::5")):
        body = struct.pack("=BBBBI", family, 24, 0, 0, 9) + netlink.attr_ip(
            netlink.IFA_ADDRESS, text) + netlink.attr_u32(netlink.IFA_FLAGS, netlink.IFA_F_NODAD)
        msg = netlink.decode_addr(bytes(16) + body)
        assert (msg["IFA_ADDRESS"], msg["prefixlen"], msg["index"], msg["IFA_FLAGS"]) == (
            text, 24, 9, netlink.IFA_F_NODAD)


def test_host_veth_names() -> None:
    assert bridge_link.is_host_veth_name("veth0a1b2c3d")
    for name in ("veth0a1b2c3", "veth0a1b2c3dd", "vethXXXXXXXX", "eth00a1b2c3d", "kpy0"):
        assert not bridge_link.is_host_veth_name(name)


# ---- JSON without the json package -------------------------------------------------------------
@pytest.mark.parametrize("value", [
    {"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24", "interface": 2}]},
    {"s": "é\u2028\"\\", "n": -1.5e-7, "i": 2**70, "t": True, "f": False, "z": None},
    [], {}, "x", 0,
])
def test_jsonio_matches_json(value: object) -> None:
    text = json.dumps(value, separators=(",", ":"))
    assert jsonio.dumps(value) == text
    assert jsonio.loads(text.encode()) == value
    assert jsonio.loads(f" \n{json.dumps(value, indent=2)}\t") == value


def test_jsonio_accepts_what_json_accepts_and_rejects_the_rest() -> None:
    assert math.isnan(jsonio.loads("NaN"))
    assert jsonio.loads(b"\xef\xbb\xbf{}") == {}
    for bad in ("", "{", "{} {}", '{"a":}', "[1,]", "'x'", '{"a" 1}'):
        with pytest.raises(ValueError):
            jsonio.loads(bad)
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonio.dumps({"a": object()})


# ---- frozen values without dataclasses ---------------------------------------------------------
def test_values_are_frozen_dataclass_alikes() -> None:
    assert not dataclasses.is_dataclass(BridgeConfig)  # the exec path's light version
    kwargs = dict(name="n", bridge="b", ipam_type="i", is_gateway=True,
                  is_default_gateway=False, force_address=False, ip_masq=True, mtu=0,
                  hairpin=False, promisc=False, dns={}, prev_result=None)
    a, b = BridgeConfig(**kwargs), BridgeConfig(**kwargs)  # type: ignore[arg-type]
    assert a == b and a != BridgeConfig(**{**kwargs, "mtu": 1})  # type: ignore[arg-type]
    gw = ipnet.ip_address("10.0.0.1")
    route = Route(dst=ipnet.ip_network("0.0.0.0/0"), gw=gw)
    assert hash(route) == hash(Route(ipnet.ip_network("0.0.0.0/0"), gw))
    assert Route(dst=ipnet.ip_network("10.1.0.0/16")).gw is None  # a plain default
    assert repr(a).startswith("BridgeConfig(name='n', bridge='b',")
    with pytest.raises(FrozenInstanceError):
        a.mtu = 5  # type: ignore[misc]
    with pytest.raises(TypeError, match="missing required argument 'prev_result'"):
        BridgeConfig(**{k: v for k, v in kwargs.items() if k != "prev_result"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected"):
        BridgeConfig(**kwargs, color="red")  # type: ignore[arg-type]
    req = spec.Request(command="ADD", container_id="c", netns="", ifname="eth0", args={},
                       path=(), stdin=b"", config={})
    assert req.env == {} and req.env is not spec.Request(
        command="ADD", container_id="c", netns="", ifname="eth0", args={}, path=(), stdin=b"",
        config={}).env  # a fresh default per instance, as default_factory gives


def test_names_are_checked_without_re() -> None:
    for good in ("a", "0ab_c.d-e", "x" * 200):
        spec.validate_container_id(good)
        assert spec.validate_network_name(good) == good
    for bad in ("", "-a", ".a", "a b", "a/b", "a\n", "é"):
        with pytest.raises(spec.CNIError):
            spec.validate_network_name(bad)


# ---- helpers run without subprocess ------------------------------------------------------------
def test_spawn_passes_stdin_and_captures_both_streams() -> None:
    code, out, err = spawn.run(["sh", "-c", "cat; echo oops >&2; exit 3"], b"hello\n" * 20000)
    assert (code, out, err) == (3, b"hello\n" * 20000, b"oops\n")


def test_spawn_gives_the_helper_default_signal_handling() -> None:
    code, out, _ = spawn.run(["sh", "-c", "grep SigIgn /proc/$$/status"])
    assert code == 0
    ignored = int(out.split()[1], 16)
    assert not ignored & (1 << (13 - 1)), "SIGPIPE stays ignored in the helper"


def test_spawn_reports_a_missing_program_and_a_signal() -> None:
    with pytest.raises(FileNotFoundError):
        spawn.run(["kpy-no-such-program-here"])
    code, _, _ = spawn.run(["sh", "-c", "kill -9 $$"])
    assert code == 128 + 9


def test_our_module_is_read_once_per_wrapper_version(tmp_path: Path) -> None:
    [path, *_] = install.install(tmp_path)
    assert invoke.our_module(str(path)) == "engine.networkdriver.plugins.bridge"
    path.write_text("#!/bin/sh\necho not ours\n")  # new size and mtime: read again
    assert invoke.our_module(str(path)) is None
    assert invoke.our_module(str(tmp_path / "missing")) is None


class _VethRtnl:
    """add_veth answering like a kernel that echoes the creation (or not); link() counted."""

    def __init__(self, echo: bool) -> None:
        self.echo, self.lookups, self.created = echo, 0, ""

    def add_veth(self, name: str, **kw: object) -> dict[str, object] | None:
        self.created = name
        return {"index": 9, "IFLA_IFNAME": name, "IFLA_ADDRESS": "02:00:00:00:00:09",
                "IFLA_LINK": 2} if self.echo else None

    def link(self, name: str) -> dict[str, object] | None:
        self.lookups += 1
        return {"index": 9, "IFLA_IFNAME": name, "IFLA_LINK": 2,
                "IFLA_ADDRESS": "02:00:00:00:00:09"} if name == self.created else None


@pytest.mark.parametrize("echo", [True, False])
def test_create_veth_uses_the_echoed_link_or_looks_it_up(echo: bool) -> None:
    nl = _VethRtnl(echo)
    host, msg, mac = bridge_link.create_veth(nl, ifname="eth0", netns_fd=3,  # type: ignore[arg-type]
                                             mtu=0, bridge_index=4)
    assert bridge_link.is_host_veth_name(host) and msg["IFLA_LINK"] == 2
    assert nl.lookups == (0 if echo else 1)
    assert len(mac.split(":")) == 6 and int(mac[:2], 16) & 0x3 == 0x2  # local, unicast
