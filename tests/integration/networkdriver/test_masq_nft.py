"""kpy-bridge's nftables masquerade backend: the rules nft lists, CHECK, DEL, atomic batches,
one socket in-process; and the iptables backend when asked for."""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from typing import Any

import pytest

from engine.networkdriver.plugins import bridge, masq, netlink, nfnl, spec
from tests.integration.networkdriver import helpers
from tests.integration.networkdriver.conftest import Net

pytestmark = pytest.mark.integration


def _mine(net: Net, family: str, cid: str) -> list[dict[str, Any]]:
    return [r for r in helpers.nft_rules(family)
            if r.get("comment") == f"kpy name={net.name} id={cid}"]


def _match(field: str, op: str, right: object, proto: str) -> dict[str, Any]:
    return {"match": {"op": op, "left": {"payload": {"protocol": proto, "field": field}},
                      "right": right}}


def _expected(family: str, pod_ip: str, subnet: str, chain: str) -> list[tuple[str, list[Any]]]:
    network = ipaddress.ip_network(subnet)  # nft prints addresses canonically: fd12:e85::
    addr, length = str(network.network_address), network.prefixlen
    group = {"addr": "224.0.0.0", "len": 4} if family == "ip" else {"addr": "ff00::", "len": 8}
    return [("postrouting", [_match("saddr", "==", pod_ip, family), {"jump": {"target": chain}}]),
            (chain, [_match("daddr", "==", {"prefix": {"addr": addr, "len": length}},
                            family), {"accept": None}]),
            (chain, [_match("daddr", "!=", {"prefix": group}, family), {"masquerade": None}])]


def test_add_check_del_with_nftables(net: Net) -> None:
    conf = net.conf(ipMasqBackend="nftables")
    ns, other_ns = net.new_netns(), net.new_netns()
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="n1")
    assert code == 0 and result is not None, result
    assert net.run("kpy-bridge", "ADD", conf, netns=other_ns, cid="n2")[0] == 0
    chain = masq.chain_name(net.name, "n1")
    pod4, pod6 = (ip["address"].split("/")[0] for ip in result["ips"])
    for family, pod_ip, subnet in (("ip", pod4, net.subnet4), ("ip6", pod6, net.subnet6)):
        got = sorted(((r["chain"], r["expr"]) for r in _mine(net, family, "n1")),
                     key=json.dumps)
        assert got == sorted(_expected(family, pod_ip, subnet, chain),
                             key=json.dumps)
    # iptables-nft's own tables are left alone
    assert not [line for line in helpers.masq_chains(net.name) if line.startswith("-A")]
    with_prev = {**conf, "prevResult": result}
    assert net.run("kpy-bridge", "CHECK", with_prev, netns=ns, cid="n1") == (0, None)
    jump = next(r for r in _mine(net, "ip6", "n1") if r["chain"] == "postrouting")
    subprocess.run(["nft", "delete", "rule", "ip6", "kpy-nat", "postrouting", "handle",
                    str(jump["handle"])], check=True)
    code, err = net.run("kpy-bridge", "CHECK", with_prev, netns=ns, cid="n1")
    assert code != 0 and err is not None and err["code"] == spec.ERR_CHECK_FAILED, err
    assert "masquerade" in err["msg"]
    assert net.run("kpy-bridge", "DEL", with_prev, netns=ns, cid="n1") == (0, None)
    assert _mine(net, "ip", "n1") == [] and _mine(net, "ip6", "n1") == []
    assert len(_mine(net, "ip", "n2")) == 3 and len(_mine(net, "ip6", "n2")) == 3
    assert net.run("kpy-bridge", "DEL", with_prev, netns=ns, cid="n1") == (0, None)  # again


def test_iptables_backend_when_asked(net: Net) -> None:
    conf = net.conf(ipMasqBackend="iptables")
    ns = net.new_netns()
    code, result = net.run("kpy-bridge", "ADD", conf, netns=ns, cid="t1")
    assert code == 0 and result is not None, result
    lines = helpers.masq_chains(net.name)
    assert len(lines) >= 6 and all(line.startswith(("-A", ":")) for line in lines), lines
    assert helpers.nft_masq_rules(net.name) == []
    assert net.run("kpy-bridge", "CHECK", {**conf, "prevResult": result}, netns=ns,
                   cid="t1") == (0, None)
    assert net.run("kpy-bridge", "DEL", {**conf, "prevResult": result}, netns=ns,
                   cid="t1") == (0, None)
    assert helpers.masq_chains(net.name) == []


def test_a_failed_batch_leaves_nothing() -> None:
    from tests.harness.prereq import need_root

    need_root()
    name = f"kpyt-{helpers.suffix()}"
    sock = nfnl.Nfnl()
    try:
        ops = [nfnl.table(name), nfnl.chain(name, "postrouting", nat_postrouting=True),
               nfnl.chain(name, "KPY-T"),
               nfnl.rule(name, "KPY-T", nfnl.masquerade(), "kpy name=t id=t"),
               nfnl.rule(name, "postrouting", nfnl.verdict(nfnl.NFT_JUMP, "KPY-MISSING"),
                         "kpy name=t id=t")]
        with pytest.raises(netlink.NetlinkError) as err:
            sock.commit(4, ops, "test batch")
        assert err.value.code == 2  # ENOENT: the jump's chain
        listed = subprocess.run(["nft", "list", "table", "ip", name], capture_output=True,
                                check=False)
        assert listed.returncode != 0  # not even the table of the batch's first message
        sock.commit(4, ops[:4], "test batch")  # the same without the bad jump goes through
        assert subprocess.run(["nft", "list", "table", "ip", name], capture_output=True,
                              check=False).returncode == 0
    finally:
        subprocess.run(["nft", "delete", "table", "ip", name], capture_output=True, check=False)
        sock.close()


def _netlink_sockets() -> int:
    fds = os.listdir("/proc/self/fd")
    return sum(1 for fd in fds if _is_netlink(fd))


def _is_netlink(fd: str) -> bool:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    if not target.startswith("socket:["):
        return False
    inode = target[8:-1]
    with open("/proc/net/netlink") as f:
        return any(line.split()[-1] == inode for line in f.readlines()[1:])


def test_in_process_calls_keep_one_nfnetlink_socket(net: Net) -> None:
    conf = json.dumps(net.conf(ipMasqBackend="nftables")).encode()
    env = {**os.environ, "CNI_IFNAME": "eth0", "CNI_PATH": str(net.bin_dirs[0])}

    def call(command: str, ns: str, cid: str, stdin: bytes = conf) -> dict[str, Any] | None:
        code, out = bridge.run({**env, "CNI_COMMAND": command, "CNI_NETNS": ns,
                                "CNI_CONTAINERID": cid}, stdin)
        assert code == 0, out
        return json.loads(out) if out.strip() else None

    ns1 = net.new_netns()
    first = call("ADD", ns1, "i1")
    sock, count = nfnl.shared(), _netlink_sockets()
    for i in range(3):
        ns = net.new_netns()
        result = call("ADD", ns, f"j{i}")
        call("DEL", ns, f"j{i}", json.dumps({**json.loads(conf), "prevResult": result}).encode())
    assert nfnl.shared() is sock
    assert _netlink_sockets() == count  # no socket opened and left behind, none per call
    assert len(_mine(net, "ip", "i1")) == 3 and first is not None
    assert all(_mine(net, "ip", f"j{i}") == [] for i in range(3))
