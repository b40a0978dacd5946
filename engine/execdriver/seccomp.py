"""Seccomp profiles: the RuntimeDefault profile, Localhost profiles (OCI/Docker JSON), and
the translation of a profile into our BPF program."""
from __future__ import annotations

import errno
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.errors import InvalidArgument
from engine.execdriver import seccomp_default
from engine.execdriver.spec import Seccomp, SeccompArg, SeccompRule
from engine.sys import bpf


def runtime_default(capabilities: Iterable[str] = ()) -> Seccomp:
    """The RuntimeDefault profile (an allow-list) for a container with this bounding set."""
    return seccomp_default.profile(capabilities)


def load_localhost(path: str) -> Seccomp:
    """A profile file in the OCI/Docker seccomp JSON format. Empty or unconfined = refused."""
    p = Path(path)
    if not p.is_absolute():
        raise InvalidArgument(f"seccomp Localhost profile path {path!r} must be absolute")
    try:
        text = p.read_text()
    except OSError as e:
        raise InvalidArgument(f"seccomp profile {path}: {e.strerror}") from e
    if not text.strip():
        raise InvalidArgument(f"seccomp profile {path} is empty; refusing to run unconfined")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"seccomp profile {path} is not JSON: {e}") from e
    if not isinstance(doc, dict) or not doc:
        raise InvalidArgument(f"seccomp profile {path} is empty; refusing to run unconfined")
    return parse_profile(doc, source=path)


def parse_profile(doc: dict[str, Any], *, source: str) -> Seccomp:
    default = doc.get("defaultAction")
    if not isinstance(default, str):
        raise InvalidArgument(f"seccomp profile {source}: defaultAction missing")
    arches = doc.get("architectures") or doc.get("archMap") or []
    arch = bpf.native()
    if arches and not any(arch.name in json.dumps(a) for a in arches):
        raise InvalidArgument(f"seccomp profile {source} does not cover {arch.name}")
    rules: list[SeccompRule] = []
    for entry in doc.get("syscalls") or []:
        names = tuple(entry.get("names") or ([entry["name"]] if "name" in entry else []))
        if not names:
            raise InvalidArgument(f"seccomp profile {source}: a rule without names")
        if entry.get("includes") or entry.get("excludes"):
            raise InvalidArgument(f"seccomp profile {source}: includes/excludes unsupported")
        args = tuple(SeccompArg(index=int(a["index"]), value=int(a.get("value", 0)),
                                value_two=int(a.get("valueTwo", 0)), op=str(a["op"]))
                     for a in entry.get("args") or [])
        rules.append(SeccompRule(names=names, action=str(entry["action"]),
                                 errno=int(entry.get("errnoRet", errno.EPERM)), args=args))
    profile = Seccomp(default_action=default, rules=tuple(rules),
                      default_errno=int(doc.get("defaultErrnoRet", errno.EPERM)))
    program(profile)  # validate actions and operators now, not at container start
    return profile


_COMPILED: dict[Seccomp, list[bpf.Insn]] = {}


def program(profile: Seccomp) -> list[bpf.Insn]:
    """The BPF program for a profile, compiled once per profile per process (profiles are
    frozen values; a monitor compiles before forking container setup, which inherits it)."""
    cached = _COMPILED.get(profile)
    if cached is None:
        cached = _COMPILED[profile] = _compile(profile)
        if len(_COMPILED) > 64:  # Localhost profiles could be many: forget the oldest
            del _COMPILED[next(iter(_COMPILED))]
    return cached


def _compile(profile: Seccomp) -> list[bpf.Insn]:
    rules = [bpf.Rule(syscall=name, action=bpf.action_value(r.action, r.errno),
                      conditions=tuple(bpf.Condition(index=a.index, op=a.op, value=a.value,
                                                     value_two=a.value_two) for a in r.args))
             for r in profile.rules for name in r.names]
    return bpf.compile_filter(rules, bpf.action_value(profile.default_action,
                                                      profile.default_errno))


def to_oci(profile: Seccomp) -> dict[str, Any]:
    return {
        "defaultAction": profile.default_action,
        **({"defaultErrnoRet": profile.default_errno}
           if profile.default_action == "SCMP_ACT_ERRNO" else {}),
        # the native ABI only, as our own filter does (other ABIs are killed there)
        "architectures": [bpf.native().name],
        "syscalls": [
            {"names": list(r.names), "action": r.action,
             **({"errnoRet": r.errno} if r.action == "SCMP_ACT_ERRNO" else {}),
             **({"args": [{"index": a.index, "value": a.value, "valueTwo": a.value_two,
                           "op": a.op} for a in r.args]} if r.args else {})}
            for r in profile.rules
        ],
    }
