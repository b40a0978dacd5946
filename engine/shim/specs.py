"""The monitor's decoding of a container's InitSpec, without rebuilding the RuntimeDefault
seccomp profile when the spec carries exactly that one (most containers do).

Why: decoding the profile builds hundreds of small objects, and in a monitor forked from
the zygote every allocation and every reference count it touches writes to (and so
copies) pages shared with the zygote: measured ~0.1 MiB of private memory per pod (of ~3.4). The
zygote built the profile once; a monitor that recognizes it (same canonical JSON, by
digest) takes the zygote's object instead. Any other profile is decoded as before.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from engine.execdriver import codec, seccomp
from engine.execdriver.spec import InitSpec, Seccomp
from engine.sys import caps


def digest(value: Any) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).digest()


DEFAULT_PROFILE: Seccomp = seccomp.runtime_default(caps.DEFAULT_CAPABILITIES)
_DEFAULT_DIGEST = digest(codec.to_jsonable(DEFAULT_PROFILE))


def init_spec(raw: Any) -> InitSpec:
    """`codec.from_jsonable(InitSpec, raw)`, sharing the default profile when it is it."""
    profile = raw.get("seccomp") if isinstance(raw, dict) else None
    if isinstance(profile, dict) and digest(profile) == _DEFAULT_DIGEST:
        spec = codec.from_jsonable(InitSpec, {**raw, "seccomp": None})
        return dataclasses.replace(spec, seccomp=DEFAULT_PROFILE)
    return codec.from_jsonable(InitSpec, raw)
