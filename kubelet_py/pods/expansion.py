"""`$(VAR)` references in env values, command and args, expanded as Kubernetes does.

`$(NAME)` becomes the variable's value when NAME is defined and stays as written when it
is not; `$$` is an escaped `$`; a `$` before anything else, or an unclosed `$(`, is kept.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping


def lookup_in(*sources: Mapping[str, str]) -> Callable[[str], str]:
    """The first source defining a name wins; an unknown name expands to itself."""
    def lookup(name: str) -> str:
        for source in sources:
            if name in source:
                return source[name]
        return f"$({name})"
    return lookup


def expand(text: str, lookup: Callable[[str], str]) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 == n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                out.append(lookup(text[i + 2:close]))
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)
