"""nfnetlink encoding of the nftables masquerade backend (no kernel needed)."""
from __future__ import annotations

import random
import struct

import pytest

from engine.networkdriver.plugins import bridge_config, netlink, nfnl, spec


def _attrs(raw: bytes) -> list[tuple[int, bytes]]:
    return list(netlink.attrs(raw, 0, len(raw)))


def _expr_names(exprs: bytes) -> list[str]:
    names = []
    for kind, elem in _attrs(exprs):
        assert kind == nfnl.NFTA_LIST_ELEM
        fields = dict(_attrs(elem))
        names.append(fields[nfnl.NFTA_EXPR_NAME].rstrip(b"\0").decode())
    return names


def test_prefix_match_masks_the_address_and_compares_big_endian() -> None:
    exprs = nfnl.match_prefix(16, bytes([10, 1, 2, 3]), 16, negate=True)
    assert _expr_names(exprs) == ["payload", "bitwise", "cmp"]
    elems = [dict(_attrs(dict(_attrs(e))[nfnl.NFTA_EXPR_DATA])) for _, e in _attrs(exprs)]
    payload, bitwise, cmp = elems
    assert struct.unpack(">I", payload[nfnl.NFTA_PAYLOAD_OFFSET])[0] == 16
    assert struct.unpack(">I", payload[nfnl.NFTA_PAYLOAD_LEN])[0] == 4
    assert dict(_attrs(bitwise[nfnl.NFTA_BITWISE_MASK]))[nfnl.NFTA_DATA_VALUE] == b"\xff\xff\0\0"
    assert struct.unpack(">I", cmp[nfnl.NFTA_CMP_OP])[0] == nfnl.NFT_CMP_NEQ
    assert dict(_attrs(cmp[nfnl.NFTA_CMP_DATA]))[nfnl.NFTA_DATA_VALUE] == bytes([10, 1, 0, 0])


def test_full_length_prefix_needs_no_mask() -> None:
    assert _expr_names(nfnl.match_prefix(8, bytes(16), 128)) == ["payload", "cmp"]


def test_prefix_match_templates_equal_a_fresh_build() -> None:
    """match_prefix splices the masked address into a template built once: the bytes are
    those of a build attribute by attribute, for every offset, size, length and negation
    (each one asked twice, so the second comes from the template)."""
    rng = random.Random(7)
    for _ in range(2):
        for offset, size in ((12, 4), (16, 4), (8, 16), (24, 16)):
            for prefixlen in range(size * 8 + 1):
                for negate in (False, True):
                    raw = rng.randbytes(size)
                    assert nfnl.match_prefix(offset, raw, prefixlen, negate=negate) == \
                        nfnl.build_match_prefix(offset, raw, prefixlen, negate=negate)


def test_jump_verdict_names_the_chain() -> None:
    (elem,) = [e for _, e in _attrs(nfnl.verdict(nfnl.NFT_JUMP, "KPY-X"))]
    data = dict(_attrs(dict(_attrs(elem))[nfnl.NFTA_EXPR_DATA]))
    verdict = dict(_attrs(dict(_attrs(data[nfnl.NFTA_IMMEDIATE_DATA]))[nfnl.NFTA_DATA_VERDICT]))
    assert struct.unpack(">i", verdict[nfnl.NFTA_VERDICT_CODE])[0] == -3
    assert verdict[nfnl.NFTA_VERDICT_CHAIN] == b"KPY-X\0"


def test_comment_round_trips_and_is_bounded() -> None:
    ((kind, udata),) = _attrs(nfnl.comment("kpy name=n id=c"))
    assert kind == nfnl.NFTA_RULE_USERDATA
    assert nfnl._parse_comment(udata) == "kpy name=n id=c"
    with pytest.raises(ValueError, match="longer than 254"):
        nfnl.comment("x" * 255)


def _conf(**extra: object) -> dict[str, object]:
    return {"cniVersion": "1.0.0", "name": "n", "type": "kpy-bridge", "ipMasq": True,
            "ipam": {"type": "kpy-host-local"}, **extra}


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_ip_masq_backend_is_read(backend: str) -> None:
    assert bridge_config.load(_conf(ipMasqBackend=backend)).ip_masq_backend == backend


def test_ip_masq_backend_defaults_to_the_kernel_choice() -> None:
    assert bridge_config.load(_conf()).ip_masq_backend == ""


def test_unknown_ip_masq_backend_is_a_spec_error() -> None:
    with pytest.raises(spec.CNIError) as err:
        bridge_config.load(_conf(ipMasqBackend="ebtables"))
    assert err.value.code == spec.ERR_UNSUPPORTED_FIELD
