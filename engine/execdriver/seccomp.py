"""Seccomp profiles: the RuntimeDefault profile, Localhost profiles (OCI/Docker JSON), and
the translation of a profile into our BPF program."""
from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

from engine.errors import InvalidArgument
from engine.execdriver.spec import Seccomp, SeccompArg, SeccompRule
from engine.sys import bpf
from engine.sys.linux import NAMESPACE_FLAGS

# Denied with EPERM by RuntimeDefault: kernel-wide state, modules, keyrings, tracing other
# processes, mounting and namespace changes, and obsolete calls (the syscalls Docker's and
# containerd's default profiles leave out of their allow-lists for unprivileged containers).
DENIED = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
    "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
    "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount",
    "mount_setattr", "move_mount", "move_pages", "name_to_handle_at", "nfsservctl",
    "open_by_handle_at", "open_tree", "perf_event_open", "pivot_root",
    "process_vm_readv", "process_vm_writev", "ptrace", "query_module", "quotactl",
    "quotactl_fd", "reboot", "request_key", "set_mempolicy", "setns", "settimeofday",
    "swapoff", "swapon", "syslog", "sysfs", "_sysctl", "umount2", "unshare", "uselib",
    "userfaultfd", "ustat", "vm86", "vm86old", "fanotify_init", "lsm_set_self_attr",
)
_NEW_NAMESPACES = tuple(NAMESPACE_FLAGS.values())


def runtime_default() -> Seccomp:
    rules = [SeccompRule(names=DENIED, action="SCMP_ACT_ERRNO", errno=errno.EPERM),
             # glibc falls back to clone(2) when clone3 is unavailable; clone's flags can
             # be inspected by BPF, clone3's (in memory) cannot.
             SeccompRule(names=("clone3",), action="SCMP_ACT_ERRNO", errno=errno.ENOSYS)]
    rules.extend(
        SeccompRule(names=("clone",), action="SCMP_ACT_ERRNO", errno=errno.EPERM,
                    args=(SeccompArg(index=0, value=flag, value_two=flag,
                                     op="SCMP_CMP_MASKED_EQ"),))
        for flag in _NEW_NAMESPACES)
    return Seccomp(default_action="SCMP_ACT_ALLOW", rules=tuple(rules))


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
    if arches and not any("X86_64" in json.dumps(a) for a in arches):
        raise InvalidArgument(f"seccomp profile {source} does not cover x86_64")
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


def program(profile: Seccomp) -> list[bpf.Insn]:
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
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": list(r.names), "action": r.action,
             **({"errnoRet": r.errno} if r.action == "SCMP_ACT_ERRNO" else {}),
             **({"args": [{"index": a.index, "value": a.value, "valueTwo": a.value_two,
                           "op": a.op} for a in r.args]} if r.args else {})}
            for r in profile.rules
        ],
    }
