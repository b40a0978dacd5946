"""HPACK decoding against the examples of RFC 7541 Appendix C, and round trips."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cri.h2 import huffman
from cri.h2.hpack import Decoder, HpackError, decode_int, encode, encode_int

GET_HTTP = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
            (b":authority", b"www.example.com")]
REQUESTS = [  # C.3 (plain) and C.4 (Huffman) send these three requests on one connection
    (GET_HTTP, 57),
    ([*GET_HTTP, (b"cache-control", b"no-cache")], 110),
    ([(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/index.html"),
      (b":authority", b"www.example.com"), (b"custom-key", b"custom-value")], 164),
]
C3 = ["828684410f7777772e6578616d706c652e636f6d", "828684be58086e6f2d6361636865",
      "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"]
C4 = ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf",
      "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"]


@pytest.mark.parametrize("blocks", [C3, C4], ids=["C.3-plain", "C.4-huffman"])
def test_request_examples_share_one_dynamic_table(blocks: list[str]) -> None:
    decoder = Decoder()
    for block, (headers, table_size) in zip(blocks, REQUESTS, strict=True):
        assert decoder.decode(bytes.fromhex(block)) == headers
        assert decoder.size == table_size


def test_c6_responses_evict_from_a_256_byte_table() -> None:
    decoder = Decoder(256)
    first = decoder.decode(bytes.fromhex(
        "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29"
        "ad171863c78f0b97c8e9ae82ae43d3"))
    assert first == [(b":status", b"302"), (b"cache-control", b"private"),
                     (b"date", b"Mon, 21 Oct 2013 20:13:21 GMT"),
                     (b"location", b"https://www.example.com")]
    assert decoder.size == 222
    second = decoder.decode(bytes.fromhex("4883640effc1c0bf"))  # :status 307 evicts 302
    assert second[0] == (b":status", b"307") and second[1:] == first[1:]
    assert decoder.size == 222


@pytest.mark.parametrize(("block", "header", "table"), [
    ("400a637573746f6d2d6b65790d637573746f6d2d686561646572",
     (b"custom-key", b"custom-header"), 55),  # C.2.1 literal with indexing
    ("040c2f73616d706c652f70617468", (b":path", b"/sample/path"), 0),  # C.2.2 without
    ("100870617373776f726406736563726574", (b"password", b"secret"), 0),  # C.2.3 never
    ("82", (b":method", b"GET"), 0),  # C.2.4 indexed
])
def test_c2_field_representations(block: str, header: tuple[bytes, bytes], table: int) -> None:
    decoder = Decoder()
    assert decoder.decode(bytes.fromhex(block)) == [header]
    assert decoder.size == table


@pytest.mark.parametrize(("value", "prefix", "encoded"), [
    (10, 5, "0a"), (1337, 5, "1f9a0a"), (42, 8, "2a")])  # C.1
def test_c1_integers(value: int, prefix: int, encoded: str) -> None:
    assert encode_int(value, prefix).hex() == encoded
    assert decode_int(bytes.fromhex(encoded), 0, prefix) == (value, len(encoded) // 2)


@pytest.mark.parametrize("block", [
    "be",  # index 62 with an empty dynamic table
    "80",  # index 0
    "3fe21f",  # table size update to 4097, beyond the 4096 we allow
    "4085f2b24a84ff",  # Huffman string with a bad padding
    "400a6375",  # string runs past the block
    "8220",  # size update after a field
])
def test_bad_blocks_are_compression_errors(block: str) -> None:
    with pytest.raises(HpackError):
        Decoder().decode(bytes.fromhex(block))


def test_huffman_rejects_eos_and_long_padding() -> None:
    with pytest.raises(huffman.HuffmanError):
        huffman.decode(b"\xff\xff\xff\xff")  # EOS (30 ones) inside the string
    with pytest.raises(huffman.HuffmanError):
        huffman.decode(b"\x1f\xff")  # 'a' then 11 bits of padding


def _huffman_encode(data: bytes) -> bytes:
    """The test's own encoder, from the canonical codes (the server never encodes)."""
    by_symbol = {symbol: (length, code) for (length, code), symbol in huffman.codes().items()}
    acc = bits = 0
    for byte in data:
        length, code = by_symbol[byte]
        acc, bits = (acc << length) | code, bits + length
    pad = -bits % 8
    acc, bits = (acc << pad) | ((1 << pad) - 1), bits + pad
    return acc.to_bytes(bits // 8, "big")


@given(st.binary(max_size=64))
def test_huffman_round_trip(data: bytes) -> None:
    assert huffman.decode(_huffman_encode(data)) == data


_names = st.binary(min_size=1, max_size=20).map(lambda b: b.lower())
_headers = st.lists(st.tuples(_names | st.sampled_from([b":status", b"content-type"]),
                              st.binary(max_size=300)), max_size=12)


@given(_headers)
def test_our_encoding_decodes_to_the_same_headers_and_leaves_the_table_empty(
        headers: list[tuple[bytes, bytes]]) -> None:
    decoder = Decoder()
    assert decoder.decode(encode(headers)) == headers
    assert decoder.size == 0


@given(st.integers(min_value=0, max_value=(1 << 28)), st.integers(min_value=1, max_value=8))
def test_integer_round_trip(value: int, prefix: int) -> None:
    data = encode_int(value, prefix)
    assert decode_int(data, 0, prefix) == (value, len(data))
