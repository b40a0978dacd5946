"""What pyroute2 would cost the bridge plugin, against our hand-packed rtnetlink (netlink.py).

Issue #6 asks for pyroute2; the plugins speak rtnetlink themselves instead, and this is the
measurement behind that choice. Two parts, side by side in one run:

- import: CPU of a fresh interpreter importing pyroute2's IPRoute, against one importing our
  netlink module (what every plugin exec without the agent pays before any work);
- the netlink work of one pod's ADD+DEL, the same requests through each library, each
  sample into a fresh netns of its own: a veth pair with its peer moved into the netns, the
  host end on a bridge and up; in the netns the address, link up and the default route;
  then (untimed) the pair deleted by its host end.

Both open their sockets the same way (the thread enters the netns, opens, returns), so the
difference is the library's own cost per request. pyroute2's own ``IPRoute(netns=...)`` is
slower still (it is timed once and printed).

Run as root: `make bench-cni-netlink` (BENCH_ARGS="--samples 60").
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

from bench.report import Series, record
from engine.networkdriver.plugins import ipnet, netlink
from engine.networkdriver.plugins.setns import setns

COMMAND = "make bench-cni-netlink"
GATEWAY, PREFIX = "10.239.0.1", 16


@contextmanager
def inside(netns_fd: int) -> Iterator[None]:
    """The calling thread in ``netns_fd`` for the block (sockets opened there stay there)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(netns_fd)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(home)


def ours(bridge: int, netns_fd: int, i: int) -> Callable[[], None]:
    address = ipnet.ip_interface(f"10.239.{1 + i // 250}.{1 + i % 250}/{PREFIX}")
    with netlink.session() as host:
        msg = host.add_veth(f"kpyn{i}", peer="eth0", peer_netns_fd=netns_fd, master=bridge,
                            up=True)
        index = int(msg["index"]) if msg else netlink.lookup(host, f"kpyn{i}")
        with netlink.session(netns_fd) as ns:
            peer = netlink.lookup(ns, "eth0")
            assert peer is not None
            ns.add_address(peer, address)
            ns.set_link(peer, up=True)
            ns.add_route(ipnet.ip_network("0.0.0.0/0"), oif=peer, gateway=GATEWAY)
        assert index is not None

    def delete() -> None:
        with netlink.session() as host:
            host.del_link(index)
    return delete


def pyroute2(bridge: int, netns_fd: int, i: int) -> Callable[[], None]:
    from pyroute2 import IPRoute

    with IPRoute() as host:
        # the same request as ours: master, up and one queue each way given at creation
        host.link("add", ifname=f"kpyp{i}", kind="veth", master=bridge, state="up",
                  num_tx_queues=1, num_rx_queues=1,
                  peer={"ifname": "eth0", "net_ns_fd": netns_fd, "num_tx_queues": 1,
                        "num_rx_queues": 1})
        # a single RTM_GETLINK by name, as ours (link_lookup() would dump every link)
        index = host.link("get", ifname=f"kpyp{i}")[0]["index"]
        with inside(netns_fd), IPRoute() as ns:
            peer = ns.link("get", ifname="eth0")[0]["index"]
            ns.addr("add", index=peer, address=f"10.239.{1 + i // 250}.{1 + i % 250}",
                    prefixlen=PREFIX)
            ns.link("set", index=peer, state="up")
            ns.route("add", dst="0.0.0.0/0", gateway=GATEWAY, oif=peer)

    def delete() -> None:
        with IPRoute() as host:
            host.link("del", index=index)
    return delete


def import_cpu_ms(code: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", code], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
    return out


def timed(fn: Callable[[], Callable[[], None]]) -> float:
    """Milliseconds of ``fn``; the deletion it hands back runs untimed (the kernel's RCU
    wait on a veth's unregistering dominates a delete, the same for both libraries)."""
    start = time.perf_counter()
    delete = fn()
    took = (time.perf_counter() - start) * 1000
    delete()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=60)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench-cni-netlink needs root (netns, bridges)")
    tag = os.getpid() % 100000
    names = [f"kpynl{tag}-{i}" for i in range(2 * args.samples + 1)]
    br = f"kpynl{tag}"
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "link", "add", br, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", br, "up"], check=True)
    series: dict[str, list[float]] = {"ours": [], "pyroute2": []}
    try:
        with netlink.session() as nl:
            bridge = netlink.lookup(nl, br)
        assert bridge is not None
        fds = [os.open(f"/run/netns/{n}", os.O_RDONLY | os.O_CLOEXEC) for n in names]
        start = time.perf_counter()
        from pyroute2 import IPRoute

        IPRoute(netns=f"/run/netns/{names[-1]}").close()
        print(f"pyroute2 IPRoute(netns=...) open+close: "
              f"{(time.perf_counter() - start) * 1000:.1f} ms", file=sys.stderr)
        for i in range(args.samples):  # interleaved, the order alternating
            pair = [("ours", ours), ("pyroute2", pyroute2)]
            for j, (label, fn) in enumerate(pair if i % 2 else pair[::-1]):
                fd = fds[2 * i + j]
                series[label].append(timed(partial(fn, bridge, fd, i)))
        for fd in fds:
            os.close(fd)
    finally:
        subprocess.run(["ip", "link", "del", br], check=False)
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False)
    runs = max(10, args.samples // 3)
    imports = {
        "import pyroute2 (CPU)": import_cpu_ms("from pyroute2 import IPRoute", runs),
        "import ours (CPU)": import_cpu_ms(
            "from engine.networkdriver.plugins import netlink", runs),
        "bare interpreter (CPU)": import_cpu_ms("pass", runs),
    }
    out = [Series(f"{k}: one pod's netlink work", tuple(v), "ms") for k, v in series.items()]
    out += [Series(k, tuple(v), "ms") for k, v in imports.items()]
    ours_s, theirs = out[0], out[1]
    record(name="cni-netlink-cost",
           title="CNI: pyroute2 against our rtnetlink (why the plugins do not use pyroute2)",
           command=COMMAND, series=out,
           ratios={"pyroute2 / ours, netlink work p50": theirs.p50 / ours_s.p50,
                   "pyroute2 / ours, import CPU p50 beyond a bare interpreter":
                       (out[2].p50 - out[4].p50) / max(out[3].p50 - out[4].p50, 0.1)},
           notes=("The same requests through each library, each sample in a fresh netns; "
                  "sockets opened the same way for both. The import is what an exec without "
                  "the agent pays before any work."))
    for s in out:
        print(f"{s.label}: p50 {s.p50:.2f} ms, p99 {s.p99:.2f} ms")


if __name__ == "__main__":
    main()
