"""Kubernetes resource quantities (`500m`, `128Mi`, `1G`, `2`) as numbers."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIX = {
    "": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9, "T": Decimal(10) ** 12, "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_RE = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


class QuantityError(ValueError):
    pass


def parse_quantity(text: str | int | float) -> Decimal:
    if isinstance(text, (int, float)):
        return Decimal(str(text))
    match = _RE.match(text.strip())
    if match is None:
        raise QuantityError(f"{text!r} is not a resource quantity")
    number, suffix = match.group(1), match.group(2) or ""
    if suffix and ("e" in number.lower()):
        raise QuantityError(f"{text!r} is not a resource quantity")
    try:
        return Decimal(number) * _SUFFIX[suffix]
    except InvalidOperation as exc:
        raise QuantityError(f"{text!r} is not a resource quantity") from exc


def millicores(text: str | int | float) -> int:
    return int((parse_quantity(text) * 1000).to_integral_value(rounding="ROUND_CEILING"))


def bytes_of(text: str | int | float) -> int:
    return int(parse_quantity(text).to_integral_value(rounding="ROUND_CEILING"))
