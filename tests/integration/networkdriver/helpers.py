"""Helpers of the CNI integration tests: netns, plugin execution, kernel-state probes."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from engine.networkdriver.plugins import masq, masq_nft, netlink, setns


def suffix() -> str:
    return secrets.token_hex(3)


def add_netns(name: str) -> str:
    subprocess.run(["ip", "netns", "add", name], check=True)
    return f"/run/netns/{name}"


def del_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def run_plugin(bin_dirs: list[Path], kind: str, command: str, conf: Mapping[str, Any] | bytes, *,
               netns: str, cid: str, ifname: str = "eth0", args: str = "",
               extra_env: Mapping[str, str] | None = None,
               timeout: float = 60) -> tuple[int, dict[str, Any] | None]:
    """Exec plugin ``kind`` found in ``bin_dirs``, as a CNI runtime does."""
    path = next(d / kind for d in bin_dirs if (d / kind).exists())
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns,
           "CNI_IFNAME": ifname, "CNI_ARGS": args,
           "CNI_PATH": ":".join(str(d) for d in bin_dirs), **(extra_env or {})}
    proc = subprocess.run([str(path)], input=stdin, env=env, capture_output=True,
                          timeout=timeout, check=False)
    out = proc.stdout.strip()
    return proc.returncode, (json.loads(out) if out else None)


def ns_exec(netns: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    name = os.path.basename(netns)
    return subprocess.run(["ip", "netns", "exec", name, *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


def ping(src_netns: str | None, dst: str) -> bool:
    argv = ["busybox", "ping", "-c", "1", "-W", "2", dst]
    proc = ns_exec(src_netns, *argv) if src_netns else subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode == 0


def links(netns: str | None = None) -> dict[str, dict[str, Any]]:
    fd = setns.open_netns(netns) if netns else None
    try:
        with netlink.session(fd) as nl:
            out = {}
            for msg in nl.links():
                out[msg.get("IFLA_IFNAME")] = {
                    "index": msg["index"], "mtu": msg.get("IFLA_MTU"),
                    "master": msg.get("IFLA_MASTER"), "mac": msg.get("IFLA_ADDRESS"),
                    "up": bool(msg["flags"] & 1), "flags": msg["flags"]}
            return out
    finally:
        if fd is not None:
            os.close(fd)


def addresses(netns: str | None, ifname: str) -> dict[str, int]:
    """``address/prefix`` -> IFA flags of ``ifname``."""
    fd = setns.open_netns(netns) if netns else None
    try:
        with netlink.session(fd) as nl:
            index = netlink.lookup(nl, ifname)
            if index is None:
                return {}
            return {f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}": m.get("IFA_FLAGS") or m["flags"]
                    for m in nl.addresses(index)}
    finally:
        if fd is not None:
            os.close(fd)


def routes(netns: str, family: int = 4) -> list[str]:
    proc = ns_exec(netns, "ip", f"-{family}", "route", "show")
    return [line.strip() for line in proc.stdout.splitlines()]


def bridge_ports(bridge: str) -> list[str]:
    try:
        return sorted(os.listdir(f"/sys/class/net/{bridge}/brif"))
    except FileNotFoundError:
        return []


def forwarding_ports(bridge: str) -> list[str]:
    """The ports of ``bridge`` not in the disabled state (0): the ones frames can cross. A
    DEL with a reaper leaves its port disabled until the reaper deletes the pair."""
    out = []
    for port in bridge_ports(bridge):
        try:
            state = Path(f"/sys/class/net/{bridge}/brif/{port}/state").read_text().strip()
        except FileNotFoundError:
            continue  # deleted meanwhile
        if state != "0":
            out.append(port)
    return out


def ip_files(data_dir: Path, network: str) -> dict[str, bytes]:
    d = data_dir / network
    if not d.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in d.iterdir()
            if p.name not in ("lock",) and not p.name.startswith("last_reserved_ip")}


def masq_chains(network: str) -> list[str]:
    out = []
    for tool in ("iptables-save", "ip6tables-save"):
        saved = subprocess.run([tool, "-t", "nat"], capture_output=True, text=True,
                               check=False).stdout
        out += [line for line in saved.splitlines() if f"kpy name={network} " in line]
    return out + nft_masq_rules(network)


def nft_rules(family: str) -> list[dict[str, Any]]:
    """The rules of ``<family> kpy-nat`` as ``nft -j`` lists them ([] without the table)."""
    proc = subprocess.run(["nft", "-j", "list", "table", family, masq_nft.TABLE],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return []
    return [item["rule"] for item in json.loads(proc.stdout)["nftables"] if "rule" in item]


def nft_masq_rules(network: str) -> list[str]:
    """The masquerade rules of ``network`` in our nftables tables, one text line each."""
    return [f"{family} {rule['chain']} {rule['comment']} {json.dumps(rule['expr'])}"
            for family in ("ip", "ip6") for rule in nft_rules(family)
            if str(rule.get("comment", "")).startswith(f"kpy name={network} ")]


def cleanup_network(network: str, bridges: list[str]) -> None:
    masq.gc(network, set())
    masq_nft.gc(network, set())
    with netlink.session() as nl:
        for b in bridges:
            index = netlink.lookup(nl, b)
            if index is not None:
                nl.del_link(index)


def iter_subnets() -> Iterator[tuple[str, str]]:
    """Random test subnets (IPv4 /24 in 10.200-249.x, IPv6 /64 in fdXX)."""
    while True:
        a, b = 200 + secrets.randbelow(50), secrets.randbelow(256)
        yield f"10.{a}.{b}.0/24", f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}::/64"
