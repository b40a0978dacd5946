from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.networkdriver.plugins import ipam_config, ipnet, spec
from engine.networkdriver.plugins.ipam_alloc import Allocator, candidates
from engine.networkdriver.plugins.ipam_store import DiskStore


def rs(subnet: str, **kw: str) -> ipam_config.RangeSet:
    return ipam_config.parse_range_set([{"subnet": subnet, **kw}])


def ip(s: str) -> ipnet.Address:
    return ipnet.ip_address(s)


def test_candidates_round_robin_from_after_the_last_reservation() -> None:
    r = rs("10.0.0.0/29")
    assert [str(a) for a, _ in candidates(r, None)] == [f"10.0.0.{i}" for i in (2, 3, 4, 5, 6)]
    assert [str(a) for a, _ in candidates(r, ip("10.0.0.4"))] == [
        f"10.0.0.{i}" for i in (5, 6, 2, 3, 4)]
    assert next(str(a) for a, _ in candidates(r, ip("10.0.0.6"))) == "10.0.0.2"


def test_candidates_never_network_gateway_or_broadcast_even_if_in_range() -> None:
    r = rs("10.0.0.0/29", rangeStart="10.0.0.0", rangeEnd="10.0.0.7", gateway="10.0.0.3")
    got = {str(a) for a, _ in candidates(r, None)}
    assert got == {"10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"}


def test_candidates_walk_every_range_of_a_set() -> None:
    r = ipam_config.parse_range_set([{"subnet": "10.0.0.0/30"}, {"subnet": "10.0.1.0/30"}])
    assert [str(a) for a, _ in candidates(r, ip("10.0.0.2"))] == ["10.0.1.2", "10.0.0.2"]


def test_reserve_writes_the_host_local_layout(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path), "net")
    with store.locked():
        a = Allocator(rs("10.0.0.0/24"), store, 3).get("cid1", "eth0")
    assert str(a.ip) == "10.0.0.2"
    assert (tmp_path / "net" / "10.0.0.2").read_bytes() == b"cid1\r\neth0"
    assert (tmp_path / "net" / "last_reserved_ip.3").read_text() == "10.0.0.2"
    assert (tmp_path / "net" / "lock").exists()
    assert a.to_json() == {"address": "10.0.0.2/24", "gateway": "10.0.0.1"}


def test_duplicate_allocation_and_exhaustion_are_distinct_codes(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path), "net")
    alloc = Allocator(rs("10.0.0.0/30"), store, 0)  # one usable address: .2
    with store.locked():
        alloc.get("a", "eth0")
        with pytest.raises(spec.CNIError) as dup:
            alloc.get("a", "eth0")
        with pytest.raises(spec.CNIError) as full:
            alloc.get("b", "eth0")
    assert dup.value.code == spec.ERR_DUPLICATE_ALLOCATION
    assert full.value.code == spec.ERR_RANGE_EXHAUSTED
    assert "no IP addresses available" in full.value.msg


def test_release_by_id_and_ifname_and_legacy_files(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path), "net")
    alloc = Allocator(rs("10.0.0.0/24"), store, 0)
    with store.locked():
        alloc.get("a", "eth0")
        alloc.get("a", "eth1")
        (tmp_path / "net" / "10.0.0.99").write_text("legacy\n")
        assert [str(x) for x in store.release("a", "eth0")] == ["10.0.0.2"]
        assert [str(x) for x in store.ips_of("a", "eth1")] == ["10.0.0.3"]
        assert [str(x) for x in store.release("legacy", "eth0")] == ["10.0.0.99"]


def test_gc_keeps_valid_attachments_and_bookkeeping(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path), "net")
    alloc = Allocator(rs("10.0.0.0/24"), store, 0)
    with store.locked():
        alloc.get("keep", "eth0")
        alloc.get("keep", "eth1")
        alloc.get("gone", "eth0")
        released = store.gc([("keep", "eth0")])
    assert sorted(map(str, released)) == ["10.0.0.3", "10.0.0.4"]
    names = sorted(os.listdir(tmp_path / "net"))
    assert names == ["10.0.0.2", "last_reserved_ip.0", "lock"]


def test_a_held_lock_times_out_with_try_again_later(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path), "net", lock_timeout=0.2)
    (tmp_path / "net").mkdir()
    fd = os.open(tmp_path / "net" / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(spec.CNIError) as err, store.locked():
            pass
        assert err.value.code == spec.ERR_TRY_AGAIN_LATER
    finally:
        os.close(fd)


def test_lock_of_a_holder_killed_with_sigkill_is_free(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / 'net' / 'lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        store = DiskStore(str(tmp_path), "net", lock_timeout=0.2)
        with pytest.raises(spec.CNIError), store.locked():
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        started = time.monotonic()
        with store.locked():
            Allocator(rs("10.0.0.0/24"), store, 0).get("c", "eth0")
        assert time.monotonic() - started < 1
    finally:
        holder.kill()
        holder.wait()
