"""IP masquerade with nftables over nfnetlink (``ipMasqBackend: nftables``).

Same rules as masq.py, in tables of our own (``ip kpy-nat``, ``ip6 kpy-nat``) so iptables-nft's
tables are never touched: a base chain ``postrouting`` (nat hook, priority srcnat) jumps, for
each pod address, to the attachment's chain (named as masq.chain_name does), which accepts
traffic to the pod network and masquerades the rest but multicast. Every rule carries the
comment ``kpy name=<network> id=<container>`` (what GC goes by). Each change is one atomic
batch; an in-process caller reuses one nfnetlink socket (nfnl.shared()).
"""
from __future__ import annotations

import errno

from engine.networkdriver.plugins import ipnet, masq, netlink, nfnl, spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

TABLE = "kpy-nat"
POSTROUTING = "postrouting"
_MULTICAST = {4: (b"\xe0\0\0\0", 4), 6: (b"\xff" + bytes(15), 8)}
_SADDR = {4: 12, 6: 8}  # offsets of the source and destination addresses in the IP header
_DADDR = {4: 16, 6: 24}
_available: list[bool] = []
# (family, note) -> handles of the attachment's jump rules, as setup's batch echoed them: a
# teardown in the same process deletes them by handle instead of dumping the base chain
# (whose length is the node's pod count); checked before use, dropped when stale
_JUMPS: dict[tuple[int, str], tuple[int, ...]] = {}
_JUMPS_MAX = 4096
_FIXED: dict[int, tuple[tuple[int, int, bytes], tuple[int, int, bytes], bytes]] = {}


def _fixed(family: int) -> tuple[tuple[int, int, bytes], tuple[int, int, bytes], bytes]:
    """What every setup batch of ``family`` sends alike: the table, the base chain and the
    masquerade expressions (built once per process)."""
    fixed = _FIXED.get(family)
    if fixed is None:
        group, bits = _MULTICAST[family]
        fixed = _FIXED[family] = (
            nfnl.table(TABLE), nfnl.chain(TABLE, POSTROUTING, nat_postrouting=True),
            nfnl.match_prefix(_DADDR[family], group, bits, negate=True) + nfnl.masquerade())
    return fixed


def available() -> bool:
    """Whether the kernel speaks nf_tables (remembered per process)."""
    if not _available:
        try:
            nfnl.shared().rules(4, TABLE, POSTROUTING)
            _available.append(True)
        except OSError:
            _available.append(False)
    return _available[0]


def _note(network: str, container_id: str) -> str:
    return f"kpy name={network} id={container_id}"


def _parse_note(note: str) -> tuple[str, str] | None:
    name, sep, cid = note.removeprefix("kpy name=").rpartition(" id=")
    return (name, cid) if sep and note.startswith("kpy name=") else None


def _fail(what: str, exc: Exception) -> spec.CNIError:
    return spec.CNIError(spec.ERR_FIREWALL, what, str(exc))


def _commit(family: int, ops: list[tuple[int, int, bytes]], what: str) -> list[nfnl.Rule]:
    try:
        return nfnl.shared().commit(family, ops, what)
    except OSError as exc:
        raise _fail(what, exc) from exc


def _rules(family: int, chain: str = "") -> list[nfnl.Rule]:
    try:
        return nfnl.shared().rules(family, TABLE, chain)
    except OSError as exc:
        raise _fail("cannot list nftables rules", exc) from exc


def setup(network: str, container_id: str, addresses: Iterable[ipnet.Interface]) -> None:
    chain, note = masq.chain_name(network, container_id), _note(network, container_id)
    try:
        nfnl.comment(note)
    except ValueError as exc:
        raise spec.CNIError(spec.ERR_INVALID_CONFIG, "network name too long for ipMasq",
                            str(exc)) from exc
    addrs = list(addresses)
    for family in sorted({a.version for a in addrs}):
        mine = [a for a in addrs if a.version == family]
        table, base, masquerade = _fixed(family)
        ops = [table, base, nfnl.chain(TABLE, chain)]
        for a in mine:
            accept = nfnl.match_prefix(_DADDR[family], a.network.network_address.packed,
                                       a.network.prefixlen) + nfnl.verdict(nfnl.NF_ACCEPT)
            ops.append(nfnl.rule(TABLE, chain, accept, note))
        ops.append(nfnl.rule(TABLE, chain, masquerade, note))
        for a in mine:
            jump = nfnl.match_prefix(_SADDR[family], a.ip.packed, a.max_prefixlen) + \
                nfnl.verdict(nfnl.NFT_JUMP, chain)
            kind, flags, body = nfnl.rule(TABLE, POSTROUTING, jump, note)
            ops.append((kind, flags | netlink.NLM_F_ECHO, body))
        echoed = _commit(family, ops, f"cannot add masquerade rules for {container_id}")
        handles = tuple(r.handle for r in echoed if r.chain == POSTROUTING and r.comment == note)
        if len(_JUMPS) >= _JUMPS_MAX:
            _JUMPS.clear()
        if len(handles) == len(mine):
            _JUMPS[(family, note)] = handles


def _delete(family: int, chains: set[str], rules: list[nfnl.Rule], *, what: str) -> None:
    """Delete ``chains`` and the postrouting rules jumping to them, in one batch."""
    notes = {r.comment for r in rules if r.chain in chains}
    for note in notes:
        _JUMPS.pop((family, note), None)
    ops = [nfnl.del_rule(TABLE, POSTROUTING, r.handle) for r in rules
           if r.chain == POSTROUTING and r.comment in notes]
    ops += [nfnl.del_chain(TABLE, c) for c in sorted(chains)]
    _commit(family, ops, what)


def teardown(network: str, container_id: str,
             addresses: Iterable[ipnet.Interface] = ()) -> None:
    """Remove the attachment's chain and the jumps to it (for the families of
    ``addresses``, both when none are known). Idempotent."""
    chain, note = masq.chain_name(network, container_id), _note(network, container_id)
    for family in sorted({a.version for a in addresses}) or (4, 6):
        if _teardown_known(family, chain, note):
            continue
        jumps = [r for r in _rules(family, POSTROUTING) if r.comment == note]
        ops = [nfnl.del_rule(TABLE, POSTROUTING, r.handle) for r in jumps]
        try:
            present = bool(jumps) or nfnl.shared().has_chain(family, TABLE, chain)
        except OSError as exc:
            raise _fail("cannot look up the masquerade chain", exc) from exc
        if present:
            ops.append(nfnl.del_chain(TABLE, chain))
        try:
            nfnl.shared().commit(family, ops, f"cannot remove masquerade rules of {container_id}")
        except OSError as exc:
            if getattr(exc, "code", None) != errno.ENOENT:  # gone meanwhile: nothing to undo
                raise _fail(f"cannot remove masquerade rules of {container_id}", exc) from exc


def _teardown_known(family: int, chain: str, note: str) -> bool:
    """Delete the chain and the jumps setup remembered, by handle, once each handle is seen
    to still be our jump (a table flushed and made again reuses handles). False, having
    changed nothing, when not remembered or not all still ours: the caller dumps instead."""
    handles = _JUMPS.pop((family, note), None)
    if not handles:
        return False
    try:
        for handle in handles:
            found = nfnl.shared().rule(family, TABLE, POSTROUTING, handle)
            if found is None or found.comment != note:
                return False
        ops = [nfnl.del_rule(TABLE, POSTROUTING, h) for h in handles]
        nfnl.shared().commit(family, [*ops, nfnl.del_chain(TABLE, chain)],
                             f"cannot remove masquerade rules of {chain}")
    except OSError:
        return False  # the batch is all or nothing: the dump path starts from what is there
    return True


def check(network: str, container_id: str, addresses: Iterable[ipnet.Interface]) -> None:
    """CNIError ERR_CHECK_FAILED unless ADD's chain and jumps are all there."""
    chain, note = masq.chain_name(network, container_id), _note(network, container_id)
    addrs = list(addresses)
    for family in sorted({a.version for a in addrs}):
        rules = _rules(family)
        jumps = sum(1 for r in rules if r.chain == POSTROUTING and r.comment == note)
        body = sum(1 for r in rules if r.chain == chain)
        want = sum(1 for a in addrs if a.version == family)
        if jumps < want or body < want + 1:
            raise spec.CNIError(spec.ERR_CHECK_FAILED, "masquerade rules are missing",
                                f"nftables {'ip' if family == 4 else 'ip6'} {TABLE} {chain}")


def gc(network: str, valid_ids: set[str], families: Iterable[int] = (4, 6)) -> None:
    keep = {masq.chain_name(network, cid) for cid in valid_ids}
    for family in families:
        rules = _rules(family)
        stale = set()
        for r in rules:
            owner = _parse_note(r.comment)
            if (owner is not None and owner[0] == network and r.chain != POSTROUTING
                    and r.chain.startswith(masq.CHAIN_PREFIX) and r.chain not in keep):
                stale.add(r.chain)
        if stale:
            _delete(family, stale, rules, what=f"cannot release masquerade rules of {network}")


def has_rules(network: str) -> bool:
    """Whether any rule of ``network`` is installed (either family)."""
    return any((_parse_note(r.comment) or ("", ""))[0] == network
               for family in (4, 6) for r in _rules(family))

