"""JSON in and out of a plugin through the ``_json`` C accelerator, without ``json``.

The ``json`` package imports ``re`` (and with it ``enum``): ~8 ms of CPU in every plugin
exec on this project's machines. The C scanner and encoder behind ``json`` are used here
directly with the settings ``json.loads``/``json.dumps`` use by default (strict strings,
NaN/Infinity accepted on input, ASCII output), so the bytes are the same.
"""
from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WS = " \t\n\r"


class DecodeError(ValueError):
    """Malformed JSON: ``pos`` is the offset of the problem."""

    def __init__(self, msg: str, pos: int) -> None:
        super().__init__(f"{msg}: char {pos}")
        self.pos = pos


_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Context:
    """The attributes ``_json.make_scanner`` reads (as json.JSONDecoder has them)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_CONSTANTS.__getitem__)
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # duck-typed context


def loads(data: bytes | str) -> Any:
    """Like ``json.loads``: one JSON value, surrounded by whitespace only."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes | bytearray) else data
    n = len(text)
    idx = 0
    while idx < n and text[idx] in _WS:
        idx += 1
    try:
        value, end = _scan(text, idx)
    except StopIteration as exc:
        raise DecodeError("expecting a value", exc.value) from None
    while end < n and text[end] in _WS:
        end += 1
    if end != n:
        raise DecodeError("extra data", end)
    return value


def _unserializable(obj: object) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_encode = _json.make_encoder(
    {}, _unserializable, _json.encode_basestring_ascii, None, ":", ",", False, False, True)


def dumps(obj: Any) -> str:
    """Like ``json.dumps(obj, separators=(",", ":"))``."""
    return "".join(_encode(obj, 0))
