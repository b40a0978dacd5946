"""The nftables backend's teardown by remembered handle: no dump of the base chain when the
same process made the rules, and a safe fallback when what it remembers is stale."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from engine.networkdriver.plugins import ipnet, masq_nft, nfnl
from tests.harness.prereq import need_binary, need_root
from tests.integration.networkdriver import helpers

pytestmark = pytest.mark.integration


@pytest.fixture()
def network() -> Iterator[str]:
    need_root()
    need_binary("nft", "apt-get install nftables")
    name = f"kpyt-h{os.urandom(3).hex()}"
    try:
        yield name
    finally:
        masq_nft.gc(name, set())
        assert not masq_nft.has_rules(name)


def _pod(i: int) -> list[ipnet.Interface]:
    return [ipnet.ip_interface(f"10.246.{i}.2/16"), ipnet.ip_interface(f"fd46::{i:x}:2/64")]


def _mine(network: str, cid: str) -> list[str]:
    note = f"kpy name={network} id={cid}"
    return [f"{family} {r['chain']}" for family in ("ip", "ip6")
            for r in helpers.nft_rules(family) if r.get("comment") == note]


def test_teardown_of_our_own_setup_dumps_nothing(network: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(3):
        masq_nft.setup(network, f"c{i}", _pod(i))

    def no_dump(*_: object, **__: object) -> list[nfnl.Rule]:
        raise AssertionError("teardown dumped the base chain")

    monkeypatch.setattr(nfnl.Nfnl, "rules", no_dump)
    masq_nft.teardown(network, "c1", _pod(1))
    monkeypatch.undo()
    assert _mine(network, "c1") == []
    assert len(_mine(network, "c0")) == 6 and len(_mine(network, "c2")) == 6
    masq_nft.teardown(network, "c1", _pod(1))  # again: idempotent, through the dump path
    assert len(_mine(network, "c0")) == 6 and len(_mine(network, "c2")) == 6


def test_a_remembered_handle_of_another_rule_is_not_trusted(network: str) -> None:
    """As after a flushed and rebuilt table: the handle names someone else's jump now. a's
    own jumps are gone too (so nothing keeps a's chain busy: a batch deleting b's jump and
    a's chain would go through), which leaves only the check to keep b's jump."""
    masq_nft.setup(network, "a", _pod(1))
    masq_nft.setup(network, "b", _pod(2))
    note_a, note_b = f"kpy name={network} id=a", f"kpy name={network} id=b"
    for family in ("ip", "ip6"):
        for r in helpers.nft_rules(family):
            if r.get("comment") == note_a and r["chain"] == "postrouting":
                subprocess.run(["nft", "delete", "rule", family, masq_nft.TABLE, "postrouting",
                                "handle", str(r["handle"])], check=True)
    for family in (4, 6):
        masq_nft._JUMPS[(family, note_a)] = masq_nft._JUMPS[(family, note_b)]
    masq_nft.teardown(network, "a", _pod(1))
    assert _mine(network, "a") == []
    assert len(_mine(network, "b")) == 6  # b's jumps survived a's teardown


def test_a_remembered_handle_whose_rule_is_gone_falls_back(network: str) -> None:
    masq_nft.setup(network, "g", _pod(3))
    jump = next(r for r in helpers.nft_rules("ip")
                if r.get("comment") == f"kpy name={network} id=g" and r["chain"] == "postrouting")
    subprocess.run(["nft", "delete", "rule", "ip", masq_nft.TABLE, "postrouting", "handle",
                    str(jump["handle"])], check=True)
    masq_nft.teardown(network, "g", _pod(3))
    assert _mine(network, "g") == []


def test_gc_forgets_the_handles_of_what_it_removed(network: str) -> None:
    masq_nft.setup(network, "x", _pod(4))
    note = f"kpy name={network} id=x"
    assert (4, note) in masq_nft._JUMPS and (6, note) in masq_nft._JUMPS
    masq_nft.gc(network, set())
    assert (4, note) not in masq_nft._JUMPS and (6, note) not in masq_nft._JUMPS
    assert _mine(network, "x") == []
