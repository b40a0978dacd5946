"""Classic-BPF seccomp filters built by us (no libseccomp), for x86_64 and aarch64.

The program checks the architecture (anything but the one it was built for, and on x86_64
the x32 ABI, is killed), then tests rules; for each syscall the first matching rule's action
is returned (rules of different syscalls never interact), else the default action.
Unconditional rules are compiled into runs of one compare each that share a return (an
allow-list of ~350 calls stays ~370 instructions); rules with argument conditions get a block
each. Conditions compare 64-bit arguments: SCMP_CMP_EQ, _NE, _MASKED_EQ, _LT, _LE, _GT, _GE.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import platform

from engine.errors import InvalidArgument
from engine.sys import syscalls_aarch64, syscalls_x86_64

log = logging.getLogger(__name__)

Insn = tuple[int, int, int, int]

LD_W_ABS = 0x20
JA = 0x05
JEQ_K = 0x15
JGT_K = 0x25
JGE_K = 0x35
AND_K = 0x54
RET_K = 0x06

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

MAX_INSNS = 4096  # BPF_MAXINSNS
_FAIL = -1  # placeholder jump target: "this rule does not match"
_RUN = 250  # compares per shared-return run (jump offsets are 8 bits)


@dataclasses.dataclass(frozen=True)
class Arch:
    name: str  # the OCI/libseccomp name, SCMP_ARCH_...
    audit: int  # AUDIT_ARCH_... as seccomp_data.arch reports it
    syscalls: dict[str, int] = dataclasses.field(hash=False, compare=False)
    x32_bit: int = 0  # syscall numbers with this bit set are another ABI: killed


X86_64 = Arch("SCMP_ARCH_X86_64", syscalls_x86_64.AUDIT_ARCH_X86_64, syscalls_x86_64.SYSCALLS,
              x32_bit=syscalls_x86_64.X32_SYSCALL_BIT)
AARCH64 = Arch("SCMP_ARCH_AARCH64", syscalls_aarch64.AUDIT_ARCH_AARCH64,
               syscalls_aarch64.SYSCALLS)
ARCHES = {"x86_64": X86_64, "aarch64": AARCH64}


@functools.cache
def native() -> Arch:
    machine = platform.machine()
    if machine not in ARCHES:
        raise InvalidArgument(f"seccomp: no syscall table for architecture {machine}")
    return ARCHES[machine]


@dataclasses.dataclass(frozen=True)
class Condition:
    index: int
    op: str
    value: int
    value_two: int = 0


@dataclasses.dataclass(frozen=True)
class Rule:
    syscall: str
    action: int  # a RET_* value (ERRNO already or'ed with the errno)
    conditions: tuple[Condition, ...] = ()


def action_value(action: str, errno: int = 1) -> int:
    table = {
        "SCMP_ACT_ALLOW": RET_ALLOW, "SCMP_ACT_KILL": RET_KILL_THREAD,
        "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD, "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS,
        "SCMP_ACT_TRAP": RET_TRAP, "SCMP_ACT_LOG": RET_LOG,
    }
    if action == "SCMP_ACT_ERRNO":
        return RET_ERRNO | (errno & 0xFFFF)
    if action not in table:
        raise InvalidArgument(f"unsupported seccomp action {action!r}")
    return table[action]


def _cond(c: Condition) -> list[Insn]:
    """Instructions that fall through when the condition holds and jump to _FAIL when not;
    the argument's high word is at 20+8i, its low word at 16+8i (little endian)."""
    if not 0 <= c.index <= 5:
        raise InvalidArgument(f"seccomp argument index {c.index} outside 0..5")
    lo, hi = 16 + 8 * c.index, 20 + 8 * c.index
    vlo, vhi = c.value & 0xFFFFFFFF, (c.value >> 32) & 0xFFFFFFFF
    if c.op == "SCMP_CMP_EQ":
        return [(LD_W_ABS, 0, 0, lo), (JEQ_K, 0, _FAIL, vlo),
                (LD_W_ABS, 0, 0, hi), (JEQ_K, 0, _FAIL, vhi)]
    if c.op == "SCMP_CMP_MASKED_EQ":
        return [(LD_W_ABS, 0, 0, lo), (AND_K, 0, 0, vlo),
                (JEQ_K, 0, _FAIL, c.value_two & 0xFFFFFFFF),
                (LD_W_ABS, 0, 0, hi), (AND_K, 0, 0, vhi),
                (JEQ_K, 0, _FAIL, (c.value_two >> 32) & 0xFFFFFFFF)]
    if c.op == "SCMP_CMP_NE":
        return [(LD_W_ABS, 0, 0, lo), (JEQ_K, 0, 2, vlo),
                (LD_W_ABS, 0, 0, hi), (JEQ_K, _FAIL, 0, vhi)]
    if c.op in ("SCMP_CMP_GT", "SCMP_CMP_GE"):
        last = JGT_K if c.op == "SCMP_CMP_GT" else JGE_K
        # high word above: holds (skip the rest); equal: decide on the low word
        return [(LD_W_ABS, 0, 0, hi), (JGT_K, 3, 0, vhi), (JEQ_K, 0, _FAIL, vhi),
                (LD_W_ABS, 0, 0, lo), (last, 0, _FAIL, vlo)]
    if c.op in ("SCMP_CMP_LT", "SCMP_CMP_LE"):
        last = JGE_K if c.op == "SCMP_CMP_LT" else JGT_K
        # high word above: fails; below: holds (skip the rest); equal: the low word decides
        return [(LD_W_ABS, 0, 0, hi), (JGT_K, _FAIL, 0, vhi), (JEQ_K, 0, 2, vhi),
                (LD_W_ABS, 0, 0, lo), (last, _FAIL, 0, vlo)]
    raise InvalidArgument(f"unsupported seccomp argument operator {c.op!r}")


def _resolve(body: list[Insn]) -> list[Insn]:
    """Replace _FAIL jump targets by "the end of this body"."""
    end = len(body)
    out: list[Insn] = []
    for i, (code, t, f, k) in enumerate(body):
        jt = end - i - 1 if t == _FAIL else t
        jf = end - i - 1 if f == _FAIL else f
        if jt > 255 or jf > 255:
            raise InvalidArgument("seccomp rule too long")
        out.append((code, jt, jf, k))
    return out


def _block(nr: int, rule: Rule) -> list[Insn]:
    body: list[Insn] = [(LD_W_ABS, 0, 0, 0), (JEQ_K, 0, _FAIL, nr)]
    for c in rule.conditions:
        body.extend(_cond(c))
    body.append((RET_K, 0, 0, rule.action))
    return _resolve(body)


def _run(numbers: list[int], action: int) -> list[Insn]:
    """Compare the syscall number (in the accumulator) with each; a match returns `action`."""
    n = len(numbers)
    out: list[Insn] = [(JEQ_K, n - i, 0, nr) for i, nr in enumerate(numbers)]
    out.append((JA, 0, 0, 1))  # none matched: step over the return
    out.append((RET_K, 0, 0, action))
    return out


def compile_filter(rules: list[Rule], default_action: int, *, arch: Arch | None = None
                   ) -> list[Insn]:
    arch = arch or native()
    program: list[Insn] = [
        (LD_W_ABS, 0, 0, 4),
        (JEQ_K, 1, 0, arch.audit),
        (RET_K, 0, 0, RET_KILL_PROCESS),
        (LD_W_ABS, 0, 0, 0),
    ]
    if arch.x32_bit:
        program += [(JGE_K, 0, 1, arch.x32_bit), (RET_K, 0, 0, RET_KILL_PROCESS)]
    per_call: dict[int, list[Rule]] = {}  # each syscall's rules, in order, up to the first
    for rule in rules:                    # unconditional one (later ones cannot match)
        nr = arch.syscalls.get(rule.syscall)
        if nr is None:
            log.debug("seccomp: %s is not a %s system call; rule ignored", rule.syscall,
                      arch.name)
            continue
        mine = per_call.setdefault(nr, [])
        if not mine or mine[-1].conditions:
            mine.append(rule)
    plain: dict[int, list[int]] = {}  # action -> syscalls whose only rule is unconditional
    for nr, mine in per_call.items():
        if len(mine) == 1 and not mine[0].conditions:
            plain.setdefault(mine[0].action, []).append(nr)
    for action, numbers in plain.items():  # the accumulator holds the number throughout
        numbers.sort()
        for start in range(0, len(numbers), _RUN):
            program += _run(numbers[start:start + _RUN], action)
    for nr, mine in per_call.items():
        if len(mine) > 1 or mine[0].conditions:
            for rule in mine:
                program += _block(nr, rule)
    program.append((RET_K, 0, 0, default_action))
    if len(program) > MAX_INSNS:
        raise InvalidArgument(f"seccomp program has {len(program)} instructions "
                              f"(max {MAX_INSNS})")
    return program
