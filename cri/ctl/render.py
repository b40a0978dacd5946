"""Text rendering shared by the commands: tables, sizes, ages, IDs, JSON."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(n: int) -> str:
    """Decimal units as docker prints them: 0B, 999B, 1.5kB, 4.27MB."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            return f"{value:.3g}{unit}" if unit != "B" else f"{int(value)}B"
        value /= 1000
    raise AssertionError("unreachable")


def ago(then_ns: int, now_ns: int) -> str:
    """`5 seconds ago`, `3 minutes ago`, ...; `-` when the time is unknown."""
    if then_ns <= 0:
        return "-"
    secs = max(0, (now_ns - then_ns) // 1_000_000_000)
    for size, unit in ((86400 * 365, "year"), (86400 * 7, "week"), (86400, "day"),
                       (3600, "hour"), (60, "minute")):
        if secs >= size:
            count = secs // size
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    if secs < 2:
        return "Less than a second ago" if secs == 0 else "1 second ago"
    return f"{secs} seconds ago"


def short_id(ident: str, length: int = 12) -> str:
    """An ID without its algorithm, cut to `length` hex digits, as docker shows them."""
    return ident.split(":", 1)[-1][:length]


def split_ref(ref: str) -> tuple[str, str]:
    """(repository, tag-or-digest) of `repo:tag` or `repo@digest`."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, "<none>"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell and separated by three spaces, docker style."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = []
    for row in [list(headers), *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)]
        lines.append("   ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def message_dict(message: Message) -> dict[str, Any]:
    """A protobuf message as crictl prints it (camelCase keys, defaults omitted)."""
    return json_format.MessageToDict(message)


def with_info(status: dict[str, Any], info: dict[str, str]) -> dict[str, Any]:
    """A status dict plus the verbose `info` map, its JSON values decoded."""
    out = dict(status)
    if info:
        decoded: dict[str, Any] = {}
        for key, value in info.items():
            try:
                decoded[key] = json.loads(value)
            except ValueError:
                decoded[key] = value
        out["info"] = decoded
    return out


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False) + "\n"
