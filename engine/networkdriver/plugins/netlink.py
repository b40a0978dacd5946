"""rtnetlink in the host netns or a pod's: hand-packed messages, no helper fork, no pyroute2.

A plugin exec pays for every import, so this speaks the few message types the plugins use
with ``struct`` and ``_socket`` only. Issue #6 named pyroute2; measured side by side
(``make bench-cni-netlink``, docs/benchmarks.md), importing it costs an exec more CPU than the
whole reference plugin, and in a resident process (the agent, engined) the same requests of
one pod's ADD take several times as long through it as through this module.

Replies are decoded into plain dicts keyed like the kernel's attribute names
(``IFLA_IFNAME``, ``IFA_ADDRESS``, ...) plus the fixed header fields (``index``, ``flags``,
``family``, ``prefixlen``).

A socket opened while the calling thread is inside a netns stays bound to it, so we
setns() the thread, open the socket and setns() back (setns only moves the calling
thread; safe in the engine's threads too).
"""
from __future__ import annotations

import _socket
import errno
import os
import struct

from engine.networkdriver.plugins import spec
from engine.networkdriver.plugins.setns import setns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from engine.networkdriver.plugins import ipnet

    Msg = dict[str, Any]

NETLINK_ROUTE = 0
NLM_F_REQUEST, NLM_F_ACK, NLM_F_ECHO, NLM_F_DUMP = 0x1, 0x4, 0x8, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 0x2, 0x3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR, RTM_NEWROUTE = 20, 21, 22, 24
RTPROT_BOOT, RT_TABLE_MAIN, RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RTN_UNICAST = 3, 254, 0, 253, 1
IFF_UP = 0x1
IFF_PROMISC = 0x100
IFA_F_NODAD = 0x02
NLA_F_NESTED = 0x8000
# attribute numbers (linux/if_link.h, if_addr.h, rtnetlink.h, veth.h)
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER, IFLA_LINKINFO = 1, 3, 4, 5, 10, 18
IFLA_NET_NS_FD, IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES = 28, 31, 32
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
AF_INET, AF_INET6 = _socket.AF_INET, _socket.AF_INET6
SOL_NETLINK, NETLINK_GET_STRICT_CHK = 270, 12
_HDR = struct.Struct("=IHHII")

# What one recv asks for. The kernel's dump parts are at most 32 KiB and a single reply of
# the links we ask about a few KiB. Not 128 KiB or more: a buffer that large is mmap()ed and
# unmapped by malloc on every call, ~40-80 us per recv, several per ADD.
RECV_BYTES = 1 << 16


def check_length(length: int, left: int, what: str) -> None:
    """A message header's length against the bytes the datagram has left: a malformed
    header, or a reply cut to RECV_BYTES, is an error rather than a short message."""
    if length < 16:
        raise NetlinkError(errno.EPROTO, what)
    if length > left:
        raise NetlinkError(errno.EMSGSIZE, f"{what}: reply larger than {RECV_BYTES} bytes")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_ATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")


class NetlinkError(OSError):
    """A negative acknowledgement from the kernel; ``code`` is the errno."""

    cni_code = spec.ERR_NETLINK

    def __init__(self, code: int, what: str) -> None:
        super().__init__(code, f"{what}: {os.strerror(code)}")
        self.code = code


# ---- encoding --------------------------------------------------------------------------------
def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    raw = _ATTR.pack(4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) & 3)


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, _U32.pack(value))


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def attr_ip(kind: int, address: str) -> bytes:
    family = AF_INET6 if ":" in address else AF_INET
    return attr(kind, _socket.inet_pton(family, address))


def attr_mac(kind: int, mac: str) -> bytes:
    return attr(kind, bytes.fromhex(mac.replace(":", "")))


def ifinfo(index: int = 0, *, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFO.pack(0, 0, index, flags, change)


# ---- decoding --------------------------------------------------------------------------------
def attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    while offset + 4 <= end:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < 4:
            break
        yield kind & ~NLA_F_NESTED, data[offset + 4:offset + length]
        offset += (length + 3) & ~3


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode()


_LINK_ATTRS = frozenset((IFLA_IFNAME, IFLA_ADDRESS, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO,
                         IFLA_LINK))
_U32_ATTRS = {IFLA_MTU: "IFLA_MTU", IFLA_MASTER: "IFLA_MASTER", IFLA_LINK: "IFLA_LINK"}


def decode_link(data: bytes) -> Msg:
    """The header and the few attributes we use. A link message is ~1.5 KiB of ~40
    attributes (statistics, per-family settings): the others are stepped over, not sliced."""
    _, _, index, flags, change = _IFINFO.unpack_from(data, 16)
    msg: Msg = {"index": index, "flags": flags, "change": change}
    offset, end, unpack = 16 + _IFINFO.size, len(data), _ATTR.unpack_from
    while offset + 4 <= end:
        length, kind = unpack(data, offset)
        if length < 4:
            break
        kind &= ~NLA_F_NESTED
        if kind in _LINK_ATTRS:
            raw = data[offset + 4:offset + length]
            if kind == IFLA_IFNAME:
                msg["IFLA_IFNAME"] = _cstr(raw)
            elif kind == IFLA_ADDRESS:
                msg["IFLA_ADDRESS"] = raw.hex(":")
            elif kind == IFLA_LINKINFO:
                kinds = [_cstr(r) for k, r in attrs(raw, 0, len(raw)) if k == IFLA_INFO_KIND]
                msg["IFLA_LINKINFO"] = {"IFLA_INFO_KIND": kinds[0]} if kinds else {}
            elif len(raw) >= 4:  # the peer's index for IFLA_LINK of a veth
                msg[_U32_ATTRS[kind]] = _U32.unpack_from(raw)[0]
        offset += (length + 3) & ~3
    return msg


def decode_addr(data: bytes) -> Msg:
    family, prefixlen, flags, scope, index = _IFADDR.unpack_from(data, 16)
    msg: Msg = {"family": family, "prefixlen": prefixlen, "flags": flags, "scope": scope,
                "index": index}
    for kind, raw in attrs(data, 16 + _IFADDR.size, len(data)):
        if kind in (IFA_ADDRESS, IFA_LOCAL):
            msg["IFA_ADDRESS" if kind == IFA_ADDRESS else "IFA_LOCAL"] = _socket.inet_ntop(
                family, raw)
        elif kind == IFA_FLAGS and len(raw) >= 4:
            msg["IFA_FLAGS"] = _U32.unpack_from(raw)[0]
    return msg


class Rtnl:
    """A rtnetlink socket: one request at a time, each acknowledged."""

    def __init__(self, sock: _socket.socket) -> None:
        self._sock = sock
        try:  # noqa: SIM105 - contextlib costs an exec ~2 ms; the kernel filters dumps (4.20+)
            self._sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        except OSError:
            pass  # older kernels: we filter replies ourselves anyway
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def request(self, kind: int, flags: int, body: bytes, what: str) -> list[bytes]:
        """Send one message; the raw reply messages (dump parts or the single answer)."""
        self._seq += 1
        seq = self._seq
        self._sock.send(_HDR.pack(16 + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body)
        out: list[bytes] = []
        while True:
            data = self._sock.recv(RECV_BYTES)
            offset = 0
            while offset + 16 <= len(data):
                length, mtype, _, mseq, _ = _HDR.unpack_from(data, offset)
                check_length(length, len(data) - offset, what)
                chunk = data[offset:offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", chunk, 16)
                    if code:
                        raise NetlinkError(-code, what)
                    return out
                if mtype == NLMSG_DONE:
                    return out
                out.append(chunk)

    # ---- links --------------------------------------------------------------------------------
    def link(self, name: str) -> Msg | None:
        try:
            found = self.request(RTM_GETLINK, NLM_F_ACK,
                                 ifinfo() + attr_str(IFLA_IFNAME, name) + _SKIP_STATS,
                                 f"get link {name}")
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        return decode_link(found[0]) if found else None

    def link_by_index(self, index: int) -> Msg:
        found = self.request(RTM_GETLINK, NLM_F_ACK, ifinfo(index) + _SKIP_STATS,
                             f"get link {index}")
        if not found:
            raise NetlinkError(errno.ENODEV, f"get link {index}")
        return decode_link(found[0])

    def links(self) -> list[Msg]:
        return [decode_link(m) for m in self.request(RTM_GETLINK, NLM_F_DUMP, ifinfo(),
                                                     "dump links")]

    def add_link(self, name: str, kind: str, *, mtu: int = 0, address: str = "",
                 data: bytes = b"", extra: bytes = b"", flags: int = 0) -> Msg | None:
        """``data``: the kind's IFLA_INFO_DATA attributes; ``extra``: more IFLA_* attributes;
        ``flags``: IFF_* to set at creation. The new link as the kernel echoes it (NLM_F_ECHO,
        saving a lookup), or None from kernels that do not echo a creation."""
        info = attr_str(IFLA_INFO_KIND, kind)
        if data:
            info += attr(IFLA_INFO_DATA | NLA_F_NESTED, data)
        body = (ifinfo(flags=flags, change=flags) + attr_str(IFLA_IFNAME, name)
                + attr(IFLA_LINKINFO | NLA_F_NESTED, info) + extra)
        if mtu:
            body += attr_u32(IFLA_MTU, mtu)
        if address:
            body += attr_mac(IFLA_ADDRESS, address)
        replies = self.request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
                               body, f"add {kind} {name}")
        for raw in replies:
            msg = decode_link(raw)
            if msg.get("IFLA_IFNAME") == name:
                return msg
        return None

    def add_veth(self, name: str, *, peer: str, peer_netns_fd: int | None, mtu: int = 0,
                 master: int = 0, up: bool = False, peer_mac: str = "") -> Msg | None:
        """A veth pair in one request: ``master``, ``up`` (of ``name``: the kernel cannot bring
        the peer up before the pair is linked) and ``peer_mac`` are applied at creation, each
        a request less. Both ends get one TX and one RX queue, what the kernel gives a veth
        anyway, but asked for: else veth shrinks the queues after registering each end, each
        shrink an RCU grace period (~1 ms) under the RTNL lock."""
        queues = attr_u32(IFLA_NUM_TX_QUEUES, 1) + attr_u32(IFLA_NUM_RX_QUEUES, 1)
        flags = IFF_UP if up else 0
        peer_body = ifinfo() + attr_str(IFLA_IFNAME, peer) + queues
        if peer_netns_fd is not None:  # else here, beside ``name``
            peer_body += attr_u32(IFLA_NET_NS_FD, peer_netns_fd)
        if mtu:
            peer_body += attr_u32(IFLA_MTU, mtu)
        if peer_mac:
            peer_body += attr_mac(IFLA_ADDRESS, peer_mac)
        extra = queues + (attr_u32(IFLA_MASTER, master) if master else b"")
        return self.add_link(name, "veth", mtu=mtu, extra=extra, flags=flags,
                             data=attr(VETH_INFO_PEER | NLA_F_NESTED, peer_body))

    def set_link(self, index: int, *, up: bool | None = None, master: int | None = None,
                 flags: int = 0, change: int = 0) -> None:
        if up is not None:
            flags |= IFF_UP if up else 0
            change |= IFF_UP
        body = ifinfo(index, flags=flags, change=change)
        if master is not None:
            body += attr_u32(IFLA_MASTER, master)
        self.request(RTM_NEWLINK, NLM_F_ACK, body, f"set link {index}")

    def del_link(self, index: int) -> None:
        self.request(RTM_DELLINK, NLM_F_ACK, ifinfo(index), f"delete link {index}")

    # ---- addresses and routes -----------------------------------------------------------------
    def addresses(self, index: int) -> list[Msg]:
        found = self.request(RTM_GETADDR, NLM_F_DUMP, _IFADDR.pack(0, 0, 0, 0, index),
                             "dump addresses")
        # the index sits at offset 20 of each message: skip other links' without decoding
        return [decode_addr(m) for m in found if _U32.unpack_from(m, 20)[0] == index]

    @staticmethod
    def _addr_body(index: int, iface: ipnet.Interface,
                   flags: int) -> bytes:
        family = AF_INET if iface.version == 4 else AF_INET6
        body = _IFADDR.pack(family, iface.network.prefixlen, flags & 0xFF, 0, index)
        body += attr(IFA_ADDRESS, iface.ip.packed)
        if iface.version == 4:
            body += attr(IFA_LOCAL, iface.ip.packed)
            if iface.network.prefixlen < 31:
                body += attr(IFA_BROADCAST, iface.network.broadcast_address.packed)
        if flags:
            body += attr_u32(IFA_FLAGS, flags)
        return body

    def add_address(self, index: int, iface: ipnet.Interface,
                    *, flags: int = 0) -> None:
        self.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                     self._addr_body(index, iface, flags), f"add address {iface}")

    def del_address(self, index: int,
                    iface: ipnet.Interface) -> None:
        self.request(RTM_DELADDR, NLM_F_ACK, self._addr_body(index, iface, 0),
                     f"delete address {iface}")

    def add_route(self, dst: ipnet.Network, *, oif: int,
                  gateway: str = "", proto: int = RTPROT_BOOT) -> None:
        family = AF_INET if dst.version == 4 else AF_INET6
        scope = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
        body = _RTMSG.pack(family, dst.prefixlen, 0, 0, RT_TABLE_MAIN, proto, scope,
                           RTN_UNICAST, 0) + attr_u32(RTA_OIF, oif)
        if dst.prefixlen:
            body += attr(RTA_DST, dst.network_address.packed)
        if gateway:
            body += attr_ip(RTA_GATEWAY, gateway)
        self.request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body,
                     f"add route {dst}")


# IFLA_EXT_MASK with RTEXT_FILTER_SKIP_STATS: no counters in link replies (older kernels
# ignore the bit and send them)
_SKIP_STATS = attr_u32(29, 1 << 3)


def _socket_here() -> _socket.socket:
    return _socket.socket(_socket.AF_NETLINK, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC,
                          NETLINK_ROUTE)


def rtnl(netns_fd: int | None = None) -> Rtnl:
    """A rtnetlink socket in the host netns, or in the netns of ``netns_fd``."""
    if netns_fd is None:
        return Rtnl(_socket_here())
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            setns(netns_fd)
        except OSError as exc:
            raise spec.CNIError(spec.ERR_UNKNOWN_CONTAINER, "cannot enter the network namespace",
                                str(exc)) from exc
        try:
            sock = _socket_here()
        finally:
            setns(here)
    finally:
        os.close(here)
    return Rtnl(sock)


class session:
    """``with session(fd) as nl``: an Rtnl closed on exit (no contextlib import)."""

    def __init__(self, netns_fd: int | None = None) -> None:
        self._nl = rtnl(netns_fd)

    def __enter__(self) -> Rtnl:
        return self._nl

    def __exit__(self, *exc: object) -> None:
        self._nl.close()


def netlink_error(what: str, exc: Exception) -> spec.CNIError:
    return spec.CNIError(spec.ERR_NETLINK, what, str(exc))


def lookup(nl: Rtnl, name: str) -> int | None:
    msg = nl.link(name)
    return int(msg["index"]) if msg is not None else None


def link_attr(nl: Rtnl, index: int, name: str) -> Any:
    return nl.link_by_index(index).get(name)


def is_exists(exc: Exception) -> bool:
    return getattr(exc, "code", None) == errno.EEXIST


def is_missing(exc: Exception) -> bool:
    return getattr(exc, "code", None) in (errno.ENODEV, errno.ENOENT, errno.ESRCH)
