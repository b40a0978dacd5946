"""HPACK (RFC 7541): the header decoder with its dynamic table, and a small encoder.

The decoder is complete: indexed fields, literals with and without indexing and never
indexed, dynamic table size updates (bounded by the size we advertised), Huffman strings.
Our encoder never adds to the peer's dynamic table: it sends static-table references and
literals without indexing, which every decoder accepts and which costs the peer nothing to
remember. Answers that never change (`:status 200` + content type, `grpc-status: 0`) are
encoded once by the caller and reused.
"""
from __future__ import annotations

from collections import deque

from cri.h2 import huffman

Header = tuple[bytes, bytes]

STATIC_TABLE: tuple[Header, ...] = tuple(
    (name.encode(), value.encode()) for name, value in (
        (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
        (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"),
        (":status", "200"), (":status", "204"), (":status", "206"), (":status", "304"),
        (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"), ("accept-language", ""),
        ("accept-ranges", ""), ("accept", ""), ("access-control-allow-origin", ""),
        ("age", ""), ("allow", ""), ("authorization", ""), ("cache-control", ""),
        ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""),
        ("content-length", ""), ("content-location", ""), ("content-range", ""),
        ("content-type", ""), ("cookie", ""), ("date", ""), ("etag", ""), ("expect", ""),
        ("expires", ""), ("from", ""), ("host", ""), ("if-match", ""),
        ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
        ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
        ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""),
        ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""),
        ("server", ""), ("set-cookie", ""), ("strict-transport-security", ""),
        ("transfer-encoding", ""), ("user-agent", ""), ("vary", ""), ("via", ""),
        ("www-authenticate", "")))
_STATIC_LEN = len(STATIC_TABLE)  # 61
_STATIC_NAME = {name: i + 1 for i, (name, _) in reversed(list(enumerate(STATIC_TABLE)))}
_STATIC_PAIR = {pair: i + 1 for i, pair in enumerate(STATIC_TABLE)}
ENTRY_OVERHEAD = 32  # section 4.1


class HpackError(ValueError):
    """A header block that cannot be decoded: a COMPRESSION_ERROR of the connection."""


class HeaderListTooLarge(Exception):
    """A header block decoded (the dynamic table is in step) to a header list larger than
    the limit: names + values + 32 bytes a field (RFC 9113 section 6.5.2)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"header list of {size} bytes, the limit is {limit}")
        self.size = size
        self.limit = limit


def decode_int(data: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    """The integer at data[pos] with an N-bit prefix (section 5.1) and the next position."""
    mask = (1 << prefix_bits) - 1
    if pos >= len(data):
        raise HpackError("header block ends inside an integer")
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        if pos >= len(data):
            raise HpackError("header block ends inside an integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
        if shift > 28:
            raise HpackError("integer too large")


def encode_int(value: int, prefix_bits: int, flags: int = 0) -> bytes:
    mask = (1 << prefix_bits) - 1
    if value < mask:
        return bytes((flags | value,))
    out = bytearray((flags | mask,))
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(data):
        raise HpackError("header block ends before a string")
    coded = data[pos] & 0x80
    length, pos = decode_int(data, pos, 7)
    end = pos + length
    if end > len(data):
        raise HpackError("string runs past the header block")
    raw = data[pos:end]
    if coded:
        try:
            raw = huffman.decode(raw)
        except huffman.HuffmanError as exc:
            raise HpackError(str(exc)) from None
    return raw, end


class Decoder:
    def __init__(self, max_table_size: int = 4096, *, max_list_size: int | None = None
                 ) -> None:
        self.max_list_size = max_list_size  # what we advertised, SETTINGS_MAX_HEADER_LIST_SIZE
        self.max_allowed = max_table_size  # what we advertised (SETTINGS_HEADER_TABLE_SIZE)
        self.max_size = max_table_size  # what the peer's encoder set, <= max_allowed
        self.size = 0
        self._table: deque[Header] = deque()  # newest first
        self._generation = 0  # grows with every change of the table
        # block -> (generation, headers) for blocks that did not change the table: a
        # client sending the same request again sends the same indexed block
        self._seen: dict[bytes, tuple[int, list[Header]]] = {}

    def _get(self, index: int) -> Header:
        if index == 0:
            raise HpackError("index 0")
        if index <= _STATIC_LEN:
            return STATIC_TABLE[index - 1]
        dynamic = index - _STATIC_LEN - 1
        if dynamic >= len(self._table):
            raise HpackError(f"index {index} is past the dynamic table")
        return self._table[dynamic]

    def _add(self, header: Header) -> None:
        size = len(header[0]) + len(header[1]) + ENTRY_OVERHEAD
        self._table.appendleft(header)
        self.size += size
        self._generation += 1
        self._evict()

    def _evict(self) -> None:
        while self.size > self.max_size and self._table:
            name, value = self._table.pop()
            self.size -= len(name) + len(value) + ENTRY_OVERHEAD

    def decode(self, block: bytes) -> list[Header]:
        """The header list of `block` (the caller must not change the list)."""
        seen = self._seen.get(block)
        if seen is not None and seen[0] == self._generation:
            return seen[1]
        generation = self._generation
        headers = self._decode(block)
        if generation == self._generation:
            if len(self._seen) >= 64:
                self._seen.clear()
            self._seen[block] = (generation, headers)
        return headers

    def _decode(self, block: bytes) -> list[Header]:
        headers: list[Header] = []
        pos, end = 0, len(block)
        seen_field = False
        limit = self.max_list_size
        size = 0  # of the header list: past the limit, fields are decoded, not kept
        while pos < end:
            byte = block[pos]
            if byte & 0x80:  # indexed field
                index, pos = decode_int(block, pos, 7)
                field = self._get(index)
            elif byte & 0xE0 == 0x20:  # dynamic table size update
                if seen_field:
                    raise HpackError("table size update after a header field")
                table_size, pos = decode_int(block, pos, 5)
                if table_size > self.max_allowed:
                    raise HpackError(f"table size {table_size} exceeds {self.max_allowed}")
                self.max_size = table_size
                self._generation += 1
                self._evict()
                continue
            else:
                indexing = byte & 0x40
                index, pos = decode_int(block, pos, 6 if indexing else 4)
                if index:
                    name = self._get(index)[0]
                else:
                    name, pos = _string(block, pos)
                value, pos = _string(block, pos)
                field = (name, value)
                if indexing:
                    self._add(field)
            seen_field = True
            if limit is not None:
                size += len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
                if size > limit:
                    continue
            headers.append(field)
        if limit is not None and size > limit:
            raise HeaderListTooLarge(size, limit)
        return headers


def encode(headers: list[Header] | tuple[Header, ...]) -> bytes:
    """A header block that leaves the peer's dynamic table alone (literals without
    indexing, static references where the static table has the field)."""
    out = bytearray()
    for name, value in headers:
        exact = _STATIC_PAIR.get((name, value))
        if exact is not None:
            out += encode_int(exact, 7, 0x80)
            continue
        index = _STATIC_NAME.get(name)
        if index is not None:
            out += encode_int(index, 4)
        else:
            out += b"\x00" + encode_int(len(name), 7) + name
        out += encode_int(len(value), 7) + value
    return bytes(out)
