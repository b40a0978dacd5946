"""The monitor's InitSpec decoding: the RuntimeDefault profile is shared, never altered."""
from __future__ import annotations

import dataclasses

from engine.execdriver import codec
from engine.execdriver.spec import InitSpec, Seccomp
from engine.shim import specs


def spec(**kw: object) -> InitSpec:
    return InitSpec(id="c", rootfs="/r", args=("/bin/true",), **kw)  # type: ignore[arg-type]


def test_the_default_profile_is_the_shared_object() -> None:
    wire = codec.to_jsonable(spec(seccomp=specs.DEFAULT_PROFILE, cwd="/w"))
    decoded = specs.init_spec(wire)
    assert decoded.seccomp is specs.DEFAULT_PROFILE
    assert decoded == codec.from_jsonable(InitSpec, wire)


def test_another_profile_is_decoded() -> None:
    other = dataclasses.replace(specs.DEFAULT_PROFILE,
                                default_action=specs.DEFAULT_PROFILE.default_action + "x")
    wire = codec.to_jsonable(spec(seccomp=other))
    decoded = specs.init_spec(wire)
    assert decoded.seccomp == other and decoded.seccomp is not specs.DEFAULT_PROFILE
    assert isinstance(decoded.seccomp, Seccomp)


def test_no_profile() -> None:
    assert specs.init_spec(codec.to_jsonable(spec())).seccomp is None
