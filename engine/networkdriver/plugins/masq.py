"""IP masquerade for an attachment: one nat chain per (network, container), removed on DEL.

Uses iptables-restore/ip6tables-restore (one exec per family and change) with a comment
naming the network and container, so GC can find chains whose attachment is gone.
"""
from __future__ import annotations

from engine.networkdriver.plugins import ipnet, spawn, spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

try:  # hashlib loads OpenSSL: ~3 ms of CPU in a plugin exec; the builtin module is enough
    from _sha256 import sha256 as _sha256  # type: ignore[import-not-found]  # 3.11
except ImportError:  # pragma: no cover - 3.12+
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found]

CHAIN_PREFIX = "KPY-"
_MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
_TOOLS = {4: ("iptables-save", "iptables-restore"), 6: ("ip6tables-save", "ip6tables-restore")}
# compiled by gc() only: re is slow to import
_COMMENT = r'--comment "?kpy name=(\S+) id=([^"\s]+)"?'


def chain_name(network: str, container_id: str) -> str:
    digest = str(_sha256(f"{network}\x00{container_id}".encode()).hexdigest())
    return CHAIN_PREFIX + digest[:24].upper()


def _comment(network: str, container_id: str) -> str:
    return f'-m comment --comment "kpy name={network} id={container_id}"'


def _run(argv: list[str], stdin: str = "") -> str:
    try:
        code, out, err = spawn.run(argv, stdin.encode())
    except FileNotFoundError as exc:
        raise spec.CNIError(spec.ERR_FIREWALL, f"{argv[0]} not found", str(exc)) from exc
    except OSError as exc:
        raise spec.CNIError(spec.ERR_FIREWALL, f"cannot run {argv[0]}", str(exc)) from exc
    if code != 0:
        raise spec.CNIError(spec.ERR_FIREWALL, f"{argv[0]} failed (exit {code})",
                            (err or out).decode(errors="replace").strip())
    return out.decode(errors="replace")


def setup(network: str, container_id: str,
          addresses: Iterable[ipnet.Interface]) -> None:
    chain, comment = chain_name(network, container_id), _comment(network, container_id)
    addrs = list(addresses)
    by_family: dict[int, list[str]] = {}
    for addr in addrs:
        lines = by_family.setdefault(addr.version, [f":{chain} - [0:0]"])
        lines.append(f"-A {chain} -d {addr.network} {comment} -j ACCEPT")
    for family, lines in by_family.items():
        lines.append(f"-A {chain} ! -d {_MULTICAST[family]} {comment} -j MASQUERADE")
        for addr in addrs:
            if addr.version == family:
                lines.append(f"-A POSTROUTING -s {addr.ip} {comment} -j {chain}")
        _run([_TOOLS[family][1], "-w", "--noflush"], "*nat\n" + "\n".join(lines) + "\nCOMMIT\n")


def _remove(family: int, chains: set[str], saved: str) -> None:
    lines = [line.replace("-A POSTROUTING", "-D POSTROUTING", 1)
             for line in saved.splitlines()
             if line.startswith("-A POSTROUTING") and line.split()[-1] in chains]
    present = {line.split()[0][1:] for line in saved.splitlines() if line.startswith(":")}
    for chain in sorted(chains & present):
        lines += [f"-F {chain}", f"-X {chain}"]
    if lines:
        _run([_TOOLS[family][1], "-w", "--noflush"], "*nat\n" + "\n".join(lines) + "\nCOMMIT\n")


def _save(family: int) -> str:
    return _run([_TOOLS[family][0], "-t", "nat"])


def teardown(network: str, container_id: str,
             addresses: Iterable[ipnet.Interface] = ()) -> None:
    """Remove the attachment's chain and its jump. With the ADD result's addresses (DEL's
    prevResult) that is one restore per family; otherwise, or if those rules are not exactly
    there, read the table first."""
    chain, comment = chain_name(network, container_id), _comment(network, container_id)
    by_family: dict[int, list[str]] = {}
    for addr in addresses:
        by_family.setdefault(addr.version, []).append(
            f"-D POSTROUTING -s {addr.ip}/{addr.max_prefixlen} {comment} -j {chain}")
    for family in sorted(by_family) or (4, 6):  # ADD made chains only for these families
        lines = by_family.get(family)
        if lines:
            try:
                _run([_TOOLS[family][1], "-w", "--noflush"],
                     "*nat\n" + "\n".join([*lines, f"-F {chain}", f"-X {chain}"]) + "\nCOMMIT\n")
                continue
            except spec.CNIError:
                pass  # not exactly as ADD left it: fall back to reading the table
        saved = _save(family)
        if chain in saved:
            _remove(family, {chain}, saved)


def gc(network: str, valid_ids: set[str], families: Iterable[int] = (4, 6)) -> None:
    import re

    comment = re.compile(_COMMENT)
    keep = {chain_name(network, cid) for cid in valid_ids}
    for family in families:
        saved = _save(family)
        stale = set()
        for line in saved.splitlines():
            m = comment.search(line)
            if m and m.group(1) == network and line.startswith("-A " + CHAIN_PREFIX):
                chain = line.split()[1]
                if chain not in keep:
                    stale.add(chain)
        if stale:
            _remove(family, stale, saved)


def check(network: str, container_id: str, addresses: Iterable[ipnet.Interface]) -> None:
    """CNIError ERR_CHECK_FAILED unless ADD's chain and jumps are all there."""
    chain, comment = chain_name(network, container_id), _comment(network, container_id)
    addrs = list(addresses)
    for family in sorted({a.version for a in addrs}):
        saved = _save(family).replace('"', "")
        tag = comment.replace('"', "")
        jumps = sum(1 for line in saved.splitlines()
                    if line.startswith("-A POSTROUTING") and line.endswith(f"-j {chain}"))
        body = sum(1 for line in saved.splitlines()
                   if line.startswith(f"-A {chain} ") and tag in line)
        want = sum(1 for a in addrs if a.version == family)
        if jumps < want or body < want + 1:
            raise spec.CNIError(spec.ERR_CHECK_FAILED, "masquerade rules are missing",
                                f"{_TOOLS[family][0]} nat {chain}")
