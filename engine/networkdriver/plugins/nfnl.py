"""nf_tables over nfnetlink: hand-packed batches and rule dumps (``struct``/``_socket`` only).

Speaks just what the nftables masquerade backend needs: tables, chains, rules made of the
payload/bitwise/cmp/immediate/masq expressions, rule dumps. Changes go in one batch
(NFNL_MSG_BATCH_BEGIN ... END), which the kernel commits or aborts as a whole; it handles a
batch inside sendmsg(), so every acknowledgement is queued by the time send() returns.

nf_tables attributes are big-endian; netlink headers are host order (see netlink.py).
"""
from __future__ import annotations

import _socket
import _thread
import errno
import struct

from engine.networkdriver.plugins import netlink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFPROTO = {4: 2, 6: 10}  # NFPROTO_IPV4, NFPROTO_IPV6
# enum nf_tables_msg_types
NFT_MSG_NEWTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_GETCHAIN, NFT_MSG_DELCHAIN = 0, 3, 4, 5
NFT_MSG_NEWRULE, NFT_MSG_GETRULE, NFT_MSG_DELRULE, NFT_MSG_GETGEN = 6, 7, 8, 16
NLM_F_APPEND = 0x800
NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME, NFTA_CHAIN_HOOK, NFTA_CHAIN_POLICY, NFTA_CHAIN_TYPE = (
    1, 3, 4, 5, 7)
NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY = 1, 2
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_HANDLE, NFTA_RULE_EXPRESSIONS = 1, 2, 3, 4
NFTA_RULE_USERDATA = 7
NFTA_LIST_ELEM, NFTA_EXPR_NAME, NFTA_EXPR_DATA = 1, 1, 2
NFTA_PAYLOAD_DREG, NFTA_PAYLOAD_BASE, NFTA_PAYLOAD_OFFSET, NFTA_PAYLOAD_LEN = 1, 2, 3, 4
NFTA_BITWISE_SREG, NFTA_BITWISE_DREG, NFTA_BITWISE_LEN, NFTA_BITWISE_MASK = 1, 2, 3, 4
NFTA_BITWISE_XOR = 5
NFTA_CMP_SREG, NFTA_CMP_OP, NFTA_CMP_DATA = 1, 2, 3
NFTA_IMMEDIATE_DREG, NFTA_IMMEDIATE_DATA = 1, 2
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2
NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN = 1, 2
NFT_REG_VERDICT, NFT_REG_1 = 0, 1
NFT_PAYLOAD_NETWORK_HEADER = 1
NFT_CMP_EQ, NFT_CMP_NEQ = 0, 1
NF_ACCEPT, NFT_JUMP = 1, -3
NF_INET_POST_ROUTING = 4
NF_IP_PRI_NAT_SRC = 100  # "srcnat"
NFTNL_UDATA_RULE_COMMENT = 0  # libnftnl's userdata TLV type that nft shows as ``comment``

_HDR = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")  # family, version, res_id (big-endian: packed by hand)
_BE32 = struct.Struct(">I")
_BE32S = struct.Struct(">i")
_BE64 = struct.Struct(">Q")
_N = netlink.NLA_F_NESTED
attr = netlink.attr


def be32(kind: int, value: int) -> bytes:
    return attr(kind, _BE32.pack(value))


def strz(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def nest(kind: int, *parts: bytes) -> bytes:
    return attr(kind | _N, b"".join(parts))


# ---- expressions -----------------------------------------------------------------------------
def _expr(name: str, *data: bytes) -> bytes:
    body = strz(NFTA_EXPR_NAME, name)
    if data:
        body += nest(NFTA_EXPR_DATA, *data)
    return nest(NFTA_LIST_ELEM, body)


def _value(kind: int, raw: bytes) -> bytes:
    return nest(kind, attr(NFTA_DATA_VALUE, raw))


def match_prefix(offset: int, raw: bytes, prefixlen: int, *, negate: bool = False) -> bytes:
    """Expressions for ``<network header at offset> [!]= raw/prefixlen`` (an address).

    The address is the last thing in them (the cmp's data: 4 or 16 bytes, no padding), so
    everything before it is built once per (offset, size, prefix length, negate) and the
    masked address appended: a setup builds two of these per pod address."""
    size = len(raw)
    key = (offset, size, prefixlen, negate)
    found = _PREFIX_HEADS.get(key)
    if found is None:
        full = build_match_prefix(offset, bytes(size), prefixlen, negate=negate)
        mask = (((1 << prefixlen) - 1) << (size * 8 - prefixlen)) if prefixlen < size * 8 else -1
        found = _PREFIX_HEADS[key] = (full[:-size], mask)
    head, mask = found
    if mask != -1:
        raw = (int.from_bytes(raw, "big") & mask).to_bytes(size, "big")
    return head + raw


_PREFIX_HEADS: dict[tuple[int, int, int, bool], tuple[bytes, int]] = {}


def build_match_prefix(offset: int, raw: bytes, prefixlen: int, *,
                       negate: bool = False) -> bytes:
    """:func:`match_prefix` built attribute by attribute (what its templates come from)."""
    size = len(raw)
    out = _expr("payload", be32(NFTA_PAYLOAD_DREG, NFT_REG_1),
                be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER),
                be32(NFTA_PAYLOAD_OFFSET, offset), be32(NFTA_PAYLOAD_LEN, size))
    if prefixlen < size * 8:
        mask = (((1 << prefixlen) - 1) << (size * 8 - prefixlen)).to_bytes(size, "big")
        raw = bytes(a & b for a, b in zip(raw, mask, strict=True))
        out += _expr("bitwise", be32(NFTA_BITWISE_SREG, NFT_REG_1),
                     be32(NFTA_BITWISE_DREG, NFT_REG_1), be32(NFTA_BITWISE_LEN, size),
                     _value(NFTA_BITWISE_MASK, mask), _value(NFTA_BITWISE_XOR, bytes(size)))
    return out + _expr("cmp", be32(NFTA_CMP_SREG, NFT_REG_1),
                       be32(NFTA_CMP_OP, NFT_CMP_NEQ if negate else NFT_CMP_EQ),
                       _value(NFTA_CMP_DATA, raw))


def verdict(code: int, chain: str = "") -> bytes:
    inner = attr(NFTA_VERDICT_CODE, _BE32S.pack(code))
    if chain:
        inner += strz(NFTA_VERDICT_CHAIN, chain)
    return _expr("immediate", be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT),
                 nest(NFTA_IMMEDIATE_DATA, nest(NFTA_DATA_VERDICT, inner)))


def masquerade() -> bytes:
    return _expr("masq")


def comment(text: str) -> bytes:
    """NFTA_RULE_USERDATA holding ``text`` as the comment nft lists."""
    raw = text.encode() + b"\0"
    if len(raw) > 255:
        raise ValueError(f"comment longer than 254 bytes: {text!r}")
    return attr(NFTA_RULE_USERDATA, bytes((NFTNL_UDATA_RULE_COMMENT, len(raw))) + raw)


def _parse_comment(udata: bytes) -> str:
    offset = 0
    while offset + 2 <= len(udata):
        kind, size = udata[offset], udata[offset + 1]
        if kind == NFTNL_UDATA_RULE_COMMENT:
            return udata[offset + 2:offset + 2 + size].split(b"\0", 1)[0].decode(errors="replace")
        offset += 2 + size
    return ""


# ---- messages --------------------------------------------------------------------------------
def table(name: str) -> tuple[int, int, bytes]:
    return NFT_MSG_NEWTABLE, netlink.NLM_F_CREATE, strz(NFTA_TABLE_NAME, name)


def chain(table_name: str, name: str, *, nat_postrouting: bool = False) -> tuple[int, int, bytes]:
    body = strz(NFTA_CHAIN_TABLE, table_name) + strz(NFTA_CHAIN_NAME, name)
    if nat_postrouting:
        body += (nest(NFTA_CHAIN_HOOK, be32(NFTA_HOOK_HOOKNUM, NF_INET_POST_ROUTING),
                      be32(NFTA_HOOK_PRIORITY, NF_IP_PRI_NAT_SRC))
                 + be32(NFTA_CHAIN_POLICY, NF_ACCEPT) + strz(NFTA_CHAIN_TYPE, "nat"))
    return NFT_MSG_NEWCHAIN, netlink.NLM_F_CREATE, body


def del_chain(table_name: str, name: str) -> tuple[int, int, bytes]:
    return NFT_MSG_DELCHAIN, 0, strz(NFTA_CHAIN_TABLE, table_name) + strz(NFTA_CHAIN_NAME, name)


def rule(table_name: str, chain_name: str, exprs: bytes, note: str) -> tuple[int, int, bytes]:
    body = (strz(NFTA_RULE_TABLE, table_name) + strz(NFTA_RULE_CHAIN, chain_name)
            + nest(NFTA_RULE_EXPRESSIONS, exprs) + comment(note))
    return NFT_MSG_NEWRULE, netlink.NLM_F_CREATE | NLM_F_APPEND, body


def del_rule(table_name: str, chain_name: str, handle: int) -> tuple[int, int, bytes]:
    return NFT_MSG_DELRULE, 0, (strz(NFTA_RULE_TABLE, table_name)
                                + strz(NFTA_RULE_CHAIN, chain_name)
                                + attr(NFTA_RULE_HANDLE, _BE64.pack(handle)))


class Rule:
    """A dumped rule: its chain, handle and comment (the other attributes are skipped)."""

    __slots__ = ("chain", "comment", "handle")

    def __init__(self, chain: str, handle: int, comment: str) -> None:
        self.chain, self.handle, self.comment = chain, handle, comment


def _decode_rule(data: bytes) -> Rule:
    chain_name, handle, note = "", 0, ""
    for kind, raw in netlink.attrs(data, 20, len(data)):
        if kind == NFTA_RULE_CHAIN:
            chain_name = raw.split(b"\0", 1)[0].decode()
        elif kind == NFTA_RULE_HANDLE:
            (handle,) = _BE64.unpack_from(raw)
        elif kind == NFTA_RULE_USERDATA:
            note = _parse_comment(raw)
    return Rule(chain_name, handle, note)


class Nfnl:
    """A NETLINK_NETFILTER socket; thread-safe (one exchange at a time)."""

    def __init__(self) -> None:
        self._sock = _socket.socket(_socket.AF_NETLINK,
                                    _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
        self._sock.bind((0, 0))
        self._seq = 0
        self._lock = _thread.allocate_lock()

    def close(self) -> None:
        self._sock.close()

    def _msg(self, kind: int, flags: int, family: int, body: bytes, *, subsys: bool = True,
             res_id: int = 0) -> tuple[int, bytes]:
        self._seq += 1
        mtype = (NFNL_SUBSYS_NFTABLES << 8 | kind) if subsys else kind
        payload = _NFGEN.pack(family, 0, _socket.htons(res_id)) + body
        return self._seq, _HDR.pack(16 + len(payload), mtype, netlink.NLM_F_REQUEST | flags,
                                    self._seq, 0) + payload

    def _replies(self, *, block: bool) -> Iterator[tuple[int, int, bytes]]:
        """(type, seq, message) of what is queued; with ``block`` wait for the first read."""
        while True:
            try:
                data = self._sock.recv(netlink.RECV_BYTES, 0 if block else _socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            offset = 0
            while offset + 16 <= len(data):
                length, mtype, _, seq, _ = _HDR.unpack_from(data, offset)
                netlink.check_length(length, len(data) - offset, "nfnetlink reply")
                yield mtype, seq, data[offset:offset + length]
                offset += (length + 3) & ~3

    def commit(self, family: int, ops: list[tuple[int, int, bytes]], what: str) -> list[Rule]:
        """Apply ``ops`` (from table(), chain(), rule(), ...) in one batch: all or nothing.
        NetlinkError carries the first failure's errno. The rules the kernel echoes back
        (ops flagged NLM_F_ECHO: the new rule with its handle), in the order of ``ops``."""
        if not ops:
            return []
        with self._lock:
            nfproto = NFPROTO[family]
            _, begin = self._msg(NFNL_MSG_BATCH_BEGIN, 0, 0, b"", subsys=False,
                                 res_id=NFNL_SUBSYS_NFTABLES)
            parts, seqs = [begin], []
            for kind, flags, body in ops:
                seq, raw = self._msg(kind, flags | netlink.NLM_F_ACK, nfproto, body)
                parts.append(raw)
                seqs.append(seq)
            _, end = self._msg(NFNL_MSG_BATCH_END, 0, 0, b"", subsys=False,
                               res_id=NFNL_SUBSYS_NFTABLES)
            parts.append(end)
            self._sock.send(b"".join(parts))
            first_error, acked, echoed = 0, set(), {}
            wanted = set(seqs)
            for mtype, seq, msg in self._replies(block=False):
                if seq not in wanted:
                    continue
                if mtype == netlink.NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", msg, 16)
                    acked.add(seq)
                    if code and not first_error:
                        first_error = -code
                elif mtype == NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWRULE:
                    echoed[seq] = _decode_rule(msg)
            if first_error:
                raise netlink.NetlinkError(first_error, what)
            if len(acked) != len(seqs):  # the kernel always answers a batch within send()
                raise netlink.NetlinkError(errno.EPROTO, f"{what}: batch not acknowledged")
            return [echoed[seq] for seq in seqs if seq in echoed]

    def rules(self, family: int, table_name: str, chain_name: str = "") -> list[Rule]:
        """The rules of ``table_name`` (of ``chain_name`` only, when given); [] if missing."""
        body = strz(NFTA_RULE_TABLE, table_name)
        if chain_name:
            body += strz(NFTA_RULE_CHAIN, chain_name)
        with self._lock:
            seq, raw = self._msg(NFT_MSG_GETRULE, netlink.NLM_F_DUMP, NFPROTO[family], body)
            self._sock.send(raw)
            out: list[Rule] = []
            for mtype, mseq, msg in self._replies(block=True):
                if mseq != seq:
                    continue
                if mtype == netlink.NLMSG_DONE:
                    return out
                if mtype == netlink.NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", msg, 16)
                    if code in (0, -errno.ENOENT):
                        return out
                    raise netlink.NetlinkError(-code, f"list rules of {table_name}")
                out.append(_decode_rule(msg))
            raise netlink.NetlinkError(errno.EPROTO, f"list rules of {table_name}")  # unreachable

    def _get(self, kind: int, family: int, body: bytes, what: str) -> list[bytes] | None:
        """A get (not a dump) of one object: the messages answering it, None when the kernel
        says it does not exist (ENOENT)."""
        with self._lock:
            seq, raw = self._msg(kind, netlink.NLM_F_ACK, NFPROTO[family], body)
            self._sock.send(raw)
            found: list[bytes] = []
            for mtype, mseq, msg in self._replies(block=True):
                if mseq != seq:
                    continue
                if mtype != netlink.NLMSG_ERROR:
                    found.append(msg)
                    continue
                (code,) = struct.unpack_from("=i", msg, 16)
                if code == -errno.ENOENT:
                    return None
                if code:
                    raise netlink.NetlinkError(-code, what)
                return found
            return found

    def rule(self, family: int, table_name: str, chain_name: str, handle: int) -> Rule | None:
        """The rule ``handle`` of ``chain_name``; None if it is gone."""
        body = (strz(NFTA_RULE_TABLE, table_name) + strz(NFTA_RULE_CHAIN, chain_name)
                + attr(NFTA_RULE_HANDLE, _BE64.pack(handle)))
        found = self._get(NFT_MSG_GETRULE, family, body, f"get rule {handle} of {chain_name}")
        return _decode_rule(found[-1]) if found else None

    def has_chain(self, family: int, table_name: str, chain_name: str) -> bool:
        body = strz(NFTA_CHAIN_TABLE, table_name) + strz(NFTA_CHAIN_NAME, chain_name)
        return bool(self._get(NFT_MSG_GETCHAIN, family, body, f"get chain {chain_name}"))


_shared: list[Nfnl] = []
_shared_lock = _thread.allocate_lock()


def shared() -> Nfnl:
    """The process's nfnetlink socket, opened once (in the netns of the first caller: the
    host's) and kept: an in-process caller pays no socket set-up or close per call."""
    with _shared_lock:
        if not _shared:
            _shared.append(Nfnl())
        return _shared[0]
