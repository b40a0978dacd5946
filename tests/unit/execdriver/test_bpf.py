"""Our seccomp BPF, executed by a small classic-BPF interpreter written for the test."""
from __future__ import annotations

import struct

import pytest

from engine.errors import InvalidArgument
from engine.execdriver.seccomp import parse_profile, program, runtime_default
from engine.sys import bpf
from engine.sys.linux import CLONE_NEWNET
from engine.sys.syscalls_x86_64 import AUDIT_ARCH_X86_64, SYSCALLS


def run(prog: list[bpf.Insn], nr: int, args: tuple[int, ...] = (),
        arch: int = AUDIT_ARCH_X86_64) -> int:
    full = (*args, 0, 0, 0, 0, 0, 0)[:6]
    data = struct.pack("=iIQ6Q", nr, arch, 0, *full)
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == bpf.LD_W_ABS:
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == bpf.AND_K:
            acc &= k
        elif code == bpf.JEQ_K:
            pc += jt if acc == k else jf
        elif code == bpf.JGE_K:
            pc += jt if acc >= k else jf
        elif code == bpf.RET_K:
            return k
        else:
            raise AssertionError(f"unknown opcode {code:#x}")
        pc += 1


def test_runtime_default() -> None:
    prog = program(runtime_default())
    assert run(prog, SYSCALLS["read"]) == bpf.RET_ALLOW
    assert run(prog, SYSCALLS["mount"]) == bpf.RET_ERRNO | 1
    assert run(prog, SYSCALLS["clone3"]) == bpf.RET_ERRNO | 38
    assert run(prog, SYSCALLS["clone"], (0x11,)) == bpf.RET_ALLOW  # SIGCHLD: a plain fork
    assert run(prog, SYSCALLS["clone"], (CLONE_NEWNET | 0x11,)) == bpf.RET_ERRNO | 1
    assert run(prog, SYSCALLS["read"], arch=0x40000003) == bpf.RET_KILL_PROCESS  # i386
    assert run(prog, SYSCALLS["read"] | 0x40000000) == bpf.RET_KILL_PROCESS  # x32


def test_profile_conditions() -> None:
    profile = parse_profile({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_NE"}]},
            {"names": ["not_a_syscall_here"], "action": "SCMP_ACT_ALLOW"},
        ]}, source="test")
    prog = program(profile)
    assert run(prog, SYSCALLS["write"]) == bpf.RET_ALLOW
    assert run(prog, SYSCALLS["openat"]) == bpf.RET_ERRNO | 38
    assert run(prog, SYSCALLS["personality"], (0xFFFFFFFF,)) == bpf.RET_ALLOW
    assert run(prog, SYSCALLS["personality"], (0x1_FFFFFFFF,)) == bpf.RET_ERRNO | 38
    assert run(prog, SYSCALLS["kill"], (1, 15)) == bpf.RET_ALLOW
    assert run(prog, SYSCALLS["kill"], (1, 9)) == bpf.RET_ERRNO | 38


def test_unsupported_profiles_refused() -> None:
    with pytest.raises(InvalidArgument, match="operator"):
        parse_profile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_GT"}]}]}, source="t")
    with pytest.raises(InvalidArgument, match="action"):
        parse_profile({"defaultAction": "SCMP_ACT_NOTIFY"}, source="t")
    with pytest.raises(InvalidArgument, match="defaultAction"):
        parse_profile({"syscalls": []}, source="t")
    with pytest.raises(InvalidArgument, match="x86_64"):
        parse_profile({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_ARM"]},
                      source="t")
