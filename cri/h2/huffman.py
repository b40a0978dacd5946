"""HPACK's static Huffman code (RFC 7541, Appendix B): decoding only.

The code is canonical (codes of one length are consecutive, shorter codes come first, and
within a length symbols are in order), so the 257 code lengths are all the data needed:
the codes themselves follow from them. We never Huffman-encode; our encoder sends literals.
"""
from __future__ import annotations

import functools

# Code length in bits of each symbol 0..255 and of EOS (256), as runs of (length, count).
_RUNS: tuple[tuple[int, int], ...] = (
    (13, 1), (23, 1), (28, 7), (24, 1), (30, 1), (28, 2), (30, 1), (28, 8), (30, 1),
    (28, 9),
    # 32 ' ' .. 47 '/'
    (6, 1), (10, 2), (12, 1), (13, 1), (6, 1), (8, 1), (11, 1), (10, 2), (8, 1), (11, 1),
    (8, 1), (6, 3),
    # 48 '0' .. 64 '@'
    (5, 3), (6, 7), (7, 1), (8, 1), (15, 1), (6, 1), (12, 1), (10, 1), (13, 1),
    # 65 'A' .. 96 '`'
    (6, 1), (7, 22), (8, 1), (7, 1), (8, 1), (13, 1), (19, 1), (13, 1), (14, 1), (6, 1),
    (15, 1),
    # 97 'a' .. 126 '~'
    (5, 1), (6, 1), (5, 1), (6, 1), (5, 1), (6, 3), (5, 1), (7, 2), (6, 3), (5, 1), (6, 1),
    (7, 1), (6, 1), (5, 2), (6, 1), (7, 5), (15, 1), (11, 1), (14, 1), (13, 1),
    # 127 .. 191
    (28, 1), (20, 1), (22, 1), (20, 2), (22, 3), (23, 1), (22, 1), (23, 5), (24, 1),
    (23, 1), (24, 2), (22, 1), (23, 1), (24, 1), (23, 4), (21, 1), (22, 1), (23, 1),
    (22, 1), (23, 2), (24, 1), (22, 1), (21, 1), (20, 1), (22, 2), (23, 2), (21, 1),
    (23, 1), (22, 2), (24, 1), (21, 1), (22, 1), (23, 2), (21, 2), (22, 1), (21, 1),
    (23, 1), (22, 1), (23, 2), (20, 1), (22, 3), (23, 1), (22, 2), (23, 1),
    # 192 .. 255, then EOS
    (26, 2), (20, 1), (19, 1), (22, 1), (23, 1), (22, 1), (25, 1), (26, 3), (27, 2),
    (26, 1), (24, 1), (25, 1), (19, 1), (21, 1), (26, 1), (27, 2), (26, 1), (27, 1),
    (24, 1), (21, 2), (26, 2), (28, 1), (27, 3), (20, 1), (24, 1), (20, 1), (21, 1),
    (22, 1), (21, 2), (23, 1), (22, 2), (25, 2), (24, 2), (26, 1), (23, 1), (26, 1),
    (27, 1), (26, 2), (27, 5), (28, 1), (27, 5), (26, 1), (30, 1),
)
EOS = 256


class HuffmanError(ValueError):
    """Bytes that are not a valid Huffman-coded string (RFC 7541, section 5.2)."""


def code_lengths() -> tuple[int, ...]:
    lengths = tuple(n for n, count in _RUNS for _ in range(count))
    if len(lengths) != 257:  # pragma: no cover  (the data above is fixed)
        raise AssertionError(f"{len(lengths)} code lengths, want 257")
    return lengths


def codes() -> dict[tuple[int, int], int]:
    """(length, code) -> symbol, for the canonical code of `code_lengths()`."""
    lengths = code_lengths()
    out: dict[tuple[int, int], int] = {}
    code, previous = 0, min(lengths)
    for symbol in sorted(range(257), key=lambda s: (lengths[s], s)):
        code <<= lengths[symbol] - previous
        previous = lengths[symbol]
        out[(previous, code)] = symbol
        code += 1
    return out


_CODES = codes()
_SHORTEST = min(length for length, _ in _CODES)
_LONGEST = max(length for length, _ in _CODES)


@functools.lru_cache(maxsize=512)  # header values repeat: one client, the same headers
def decode(data: bytes) -> bytes:
    out = bytearray()
    acc = bits = 0
    table = _CODES
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= _SHORTEST:
            for length in range(_SHORTEST, min(bits, _LONGEST) + 1):
                symbol = table.get((length, acc >> (bits - length)))
                if symbol is not None:
                    break
            else:
                if bits >= _LONGEST:
                    raise HuffmanError("no Huffman code matches")
                break
            if symbol == EOS:
                raise HuffmanError("EOS inside a Huffman-coded string")
            out.append(symbol)
            bits -= length
            acc &= (1 << bits) - 1
    if bits > 7 or acc != (1 << bits) - 1:
        raise HuffmanError("Huffman padding is not a prefix of EOS (all ones, < 8 bits)")
    return bytes(out)
