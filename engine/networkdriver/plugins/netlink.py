"""rtnetlink with pyroute2's message classes, in the host netns or a pod's, no helper fork.

A socket opened while the calling thread is inside a netns stays bound to it, so we
setns() the thread, open the socket and setns() back (setns only moves the calling
thread; safe in the engine's threads too).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import socket
import struct
import sys
from collections.abc import Iterator
from typing import Any

from engine.networkdriver.plugins import spec

CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
NLMSG_ERROR, NLMSG_DONE = 0x2, 0x3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR, RTM_NEWROUTE = 20, 21, 22, 24
RTPROT_BOOT, RT_TABLE_MAIN, RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RTN_UNICAST = 3, 254, 0, 253, 1
IFF_UP = 0x1
IFF_PROMISC = 0x100
IFA_F_NODAD = 0x02
_LIBC: list[ctypes.CDLL] = []


def fast_import() -> None:
    """Executables only: skip pyroute2's package __init__ (it imports every module: ~250 ms)."""
    if "pyroute2" in sys.modules:
        return
    import importlib.util
    import types

    for package in ("pyroute2", "pyroute2.iproute"):
        found = importlib.util.find_spec(package)
        if found is None or found.submodule_search_locations is None:
            return
        stub = types.ModuleType(package)
        stub.__path__ = list(found.submodule_search_locations)
        sys.modules[package] = stub


def _setns(fd: int) -> None:
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    if _LIBC[0].setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def open_netns(path: str) -> int:
    """An fd of the netns at ``path``; CNIError 3 when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise spec.CNIError(spec.ERR_UNKNOWN_CONTAINER, "network namespace does not exist",
                            path) from exc
    try:
        st = os.fstat(fd)
        if st.st_size != 0 or not os.path.exists(f"/proc/self/fd/{fd}"):
            raise spec.CNIError(spec.ERR_UNKNOWN_CONTAINER, "not a network namespace", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


class NetlinkError(OSError):
    """A negative acknowledgement from the kernel; ``code`` is the errno."""

    cni_code = spec.ERR_NETLINK

    def __init__(self, code: int, what: str) -> None:
        super().__init__(code, f"{what}: {os.strerror(code)}")
        self.code = code


class Rtnl:
    """A rtnetlink socket speaking pyroute2's message classes (no IPRoute: it imports asyncio
    and most of pyroute2, a quarter second of every plugin exec)."""

    def __init__(self, sock: socket.socket) -> None:
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        from pyroute2.netlink.rtnl.rtmsg import rtmsg

        self._sock = sock
        self._sock.bind((0, 0))
        self._seq = 0
        self._ifinfmsg, self._ifaddrmsg, self._rtmsg = ifinfmsg, ifaddrmsg, rtmsg

    def close(self) -> None:
        self._sock.close()

    def _request(self, msg: Any, kind: int, flags: int, what: str) -> list[Any]:
        self._seq += 1
        msg["header"]["type"] = kind
        msg["header"]["flags"] = NLM_F_REQUEST | flags
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._sock.send(msg.data)
        cls = type(msg)
        out: list[Any] = []
        while True:
            data = self._sock.recv(1 << 20)
            offset = 0
            while offset + 16 <= len(data):
                length, mtype, _, seq, _ = struct.unpack_from("=IHHII", data, offset)
                if length < 16:
                    raise NetlinkError(errno.EPROTO, what)
                chunk = data[offset:offset + length]
                offset += (length + 3) & ~3
                if seq != self._seq:
                    continue
                if mtype == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", chunk, 16)
                    if code:
                        raise NetlinkError(-code, what)
                    return out
                if mtype == NLMSG_DONE:
                    return out
                reply = cls(chunk)
                reply.decode()
                out.append(reply)

    def _link_msg(self, index: int = 0, attrs: list[Any] | None = None) -> Any:
        msg = self._ifinfmsg()
        msg["index"] = index
        msg["attrs"] = attrs or []
        return msg

    # ---- links --------------------------------------------------------------------------------
    def link(self, name: str) -> Any | None:
        try:
            found = self._request(self._link_msg(attrs=[["IFLA_IFNAME", name]]), RTM_GETLINK,
                                  NLM_F_ACK, f"get link {name}")
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        return found[0] if found else None

    def link_by_index(self, index: int) -> Any:
        return self._request(self._link_msg(index), RTM_GETLINK, NLM_F_ACK,
                             f"get link {index}")[0]

    def links(self) -> list[Any]:
        return self._request(self._link_msg(), RTM_GETLINK, NLM_F_DUMP, "dump links")

    def add_link(self, name: str, kind: str, *, mtu: int = 0, address: str = "",
                 data: list[Any] | None = None) -> None:
        info: list[Any] = [["IFLA_INFO_KIND", kind]]
        if data:
            info.append(["IFLA_INFO_DATA", {"attrs": data}])
        attrs: list[Any] = [["IFLA_IFNAME", name], ["IFLA_LINKINFO", {"attrs": info}]]
        if mtu:
            attrs.append(["IFLA_MTU", mtu])
        if address:
            attrs.append(["IFLA_ADDRESS", address])
        self._request(self._link_msg(attrs=attrs), RTM_NEWLINK,
                      NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, f"add {kind} {name}")

    def add_veth(self, name: str, *, peer: str, peer_netns_fd: int, mtu: int = 0) -> None:
        peer_attrs: list[Any] = [["IFLA_IFNAME", peer], ["IFLA_NET_NS_FD", peer_netns_fd]]
        if mtu:
            peer_attrs.append(["IFLA_MTU", mtu])
        self.add_link(name, "veth", mtu=mtu, data=[["VETH_INFO_PEER", {"attrs": peer_attrs}]])

    def set_link(self, index: int, *, up: bool | None = None, master: int | None = None,
                 flags: int = 0, change: int = 0) -> None:
        msg = self._link_msg(index)
        if up is not None:
            flags |= IFF_UP if up else 0
            change |= IFF_UP
        msg["flags"], msg["change"] = flags, change
        if master is not None:
            msg["attrs"].append(["IFLA_MASTER", master])
        self._request(msg, RTM_NEWLINK, NLM_F_ACK, f"set link {index}")

    def del_link(self, index: int) -> None:
        self._request(self._link_msg(index), RTM_DELLINK, NLM_F_ACK, f"delete link {index}")

    # ---- addresses and routes -----------------------------------------------------------------
    def addresses(self, index: int) -> list[Any]:
        msg = self._ifaddrmsg()
        msg["index"] = index
        return [m for m in self._request(msg, RTM_GETADDR, NLM_F_DUMP, "dump addresses")
                if m["index"] == index]

    def _addr_msg(self, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
                  flags: int) -> Any:
        msg = self._ifaddrmsg()
        msg["family"] = socket.AF_INET if iface.version == 4 else socket.AF_INET6
        msg["prefixlen"], msg["index"], msg["flags"] = iface.network.prefixlen, index, flags
        attrs: list[Any] = [["IFA_ADDRESS", str(iface.ip)]]
        if iface.version == 4:
            attrs.append(["IFA_LOCAL", str(iface.ip)])
            if iface.network.prefixlen < 31:
                attrs.append(["IFA_BROADCAST", str(iface.network.broadcast_address)])
        if flags:
            attrs.append(["IFA_FLAGS", flags])
        msg["attrs"] = attrs
        return msg

    def add_address(self, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
                    *, flags: int = 0) -> None:
        self._request(self._addr_msg(index, iface, flags), RTM_NEWADDR,
                      NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, f"add address {iface}")

    def del_address(self, index: int,
                    iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
        self._request(self._addr_msg(index, iface, 0), RTM_DELADDR, NLM_F_ACK,
                      f"delete address {iface}")

    def add_route(self, dst: ipaddress.IPv4Network | ipaddress.IPv6Network, *, oif: int,
                  gateway: str = "", proto: int = RTPROT_BOOT) -> None:
        msg = self._rtmsg()
        msg["family"] = socket.AF_INET if dst.version == 4 else socket.AF_INET6
        msg["dst_len"], msg["table"], msg["proto"] = dst.prefixlen, RT_TABLE_MAIN, proto
        msg["scope"] = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
        msg["type"] = RTN_UNICAST
        attrs: list[Any] = [["RTA_OIF", oif]]
        if dst.prefixlen:
            attrs.append(["RTA_DST", str(dst.network_address)])
        if gateway:
            attrs.append(["RTA_GATEWAY", gateway])
        msg["attrs"] = attrs
        self._request(msg, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                      f"add route {dst}")


def rtnl(netns_fd: int | None = None) -> Rtnl:
    """A rtnetlink socket in the host netns, or in the netns of ``netns_fd``."""
    if netns_fd is None:
        return Rtnl(socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE))
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(netns_fd)
        except OSError as exc:
            raise spec.CNIError(spec.ERR_UNKNOWN_CONTAINER, "cannot enter the network namespace",
                                str(exc)) from exc
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
        finally:
            _setns(here)
    finally:
        os.close(here)
    return Rtnl(sock)


@contextlib.contextmanager
def session(netns_fd: int | None = None) -> Iterator[Rtnl]:
    nl = rtnl(netns_fd)
    try:
        yield nl
    finally:
        nl.close()


def netlink_error(what: str, exc: Exception) -> spec.CNIError:
    return spec.CNIError(spec.ERR_NETLINK, what, str(exc))


def lookup(nl: Rtnl, name: str) -> int | None:
    msg = nl.link(name)
    return int(msg["index"]) if msg is not None else None


def link_kind(nl: Rtnl, index: int) -> str:
    info = nl.link_by_index(index).get("IFLA_LINKINFO")
    return str(info.get("IFLA_INFO_KIND")) if info is not None else ""


def link_attr(nl: Rtnl, index: int, attr: str) -> Any:
    return nl.link_by_index(index).get(attr)


def is_exists(exc: Exception) -> bool:
    return getattr(exc, "code", None) == errno.EEXIST


def is_missing(exc: Exception) -> bool:
    return getattr(exc, "code", None) in (errno.ENODEV, errno.ENOENT, errno.ESRCH)
