"""Classic-BPF seccomp filters built by us (no libseccomp): x86_64 only.

The program checks the architecture (anything but x86_64, and the x32 ABI, is killed),
then tests rules in order; the first matching rule's action is returned, else the default.
Argument conditions support SCMP_CMP_EQ, SCMP_CMP_NE and SCMP_CMP_MASKED_EQ on 64-bit args.
"""
from __future__ import annotations

import dataclasses
import logging

from engine.errors import InvalidArgument
from engine.sys.syscalls_x86_64 import AUDIT_ARCH_X86_64, SYSCALLS, X32_SYSCALL_BIT

log = logging.getLogger(__name__)

Insn = tuple[int, int, int, int]

LD_W_ABS = 0x20
JEQ_K = 0x15
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

_FAIL = -1  # placeholder jump target: "this rule does not match"


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
    if not 0 <= c.index <= 5:
        raise InvalidArgument(f"seccomp argument index {c.index} outside 0..5")
    lo, hi = 16 + 8 * c.index, 20 + 8 * c.index
    if c.op == "SCMP_CMP_EQ":
        return [(LD_W_ABS, 0, 0, lo), (JEQ_K, 0, _FAIL, c.value & 0xFFFFFFFF),
                (LD_W_ABS, 0, 0, hi), (JEQ_K, 0, _FAIL, c.value >> 32)]
    if c.op == "SCMP_CMP_MASKED_EQ":
        return [(LD_W_ABS, 0, 0, lo), (AND_K, 0, 0, c.value & 0xFFFFFFFF),
                (JEQ_K, 0, _FAIL, c.value_two & 0xFFFFFFFF),
                (LD_W_ABS, 0, 0, hi), (AND_K, 0, 0, c.value >> 32),
                (JEQ_K, 0, _FAIL, c.value_two >> 32)]
    if c.op == "SCMP_CMP_NE":
        return [(LD_W_ABS, 0, 0, lo), (JEQ_K, 0, 2, c.value & 0xFFFFFFFF),
                (LD_W_ABS, 0, 0, hi), (JEQ_K, _FAIL, 0, c.value >> 32)]
    raise InvalidArgument(f"unsupported seccomp argument operator {c.op!r}")


def _block(nr: int, rule: Rule) -> list[Insn]:
    body: list[Insn] = [(LD_W_ABS, 0, 0, 0), (JEQ_K, 0, _FAIL, nr)]
    for c in rule.conditions:
        body.extend(_cond(c))
    body.append((RET_K, 0, 0, rule.action))
    end = len(body)  # jumping here = the next block
    out: list[Insn] = []
    for i, (code, t, f, k) in enumerate(body):
        jt = end - i - 1 if t == _FAIL else t
        jf = end - i - 1 if f == _FAIL else f
        if jt > 255 or jf > 255:
            raise InvalidArgument("seccomp rule too long")
        out.append((code, jt, jf, k))
    return out


def compile_filter(rules: list[Rule], default_action: int) -> list[Insn]:
    program: list[Insn] = [
        (LD_W_ABS, 0, 0, 4),
        (JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        (RET_K, 0, 0, RET_KILL_PROCESS),
        (LD_W_ABS, 0, 0, 0),
        (JGE_K, 0, 1, X32_SYSCALL_BIT),
        (RET_K, 0, 0, RET_KILL_PROCESS),
    ]
    for rule in rules:
        nr = SYSCALLS.get(rule.syscall)
        if nr is None:
            log.debug("seccomp: %s is not an x86_64 system call; rule ignored", rule.syscall)
            continue
        program.extend(_block(nr, rule))
    program.append((RET_K, 0, 0, default_action))
    if len(program) > 4096:
        raise InvalidArgument(f"seccomp program has {len(program)} instructions (max 4096)")
    return program
