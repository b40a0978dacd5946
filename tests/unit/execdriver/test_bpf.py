"""Our seccomp BPF, executed by a small classic-BPF interpreter written for the test."""
from __future__ import annotations

import errno
import struct

import pytest

from engine.errors import InvalidArgument
from engine.execdriver import seccomp_default
from engine.execdriver.seccomp import parse_profile, program, runtime_default
from engine.sys import bpf, caps
from engine.sys.linux import (
    CLONE_NEWCGROUP,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
)
from engine.sys.syscalls_x86_64 import AUDIT_ARCH_X86_64, SYSCALLS


def run(prog: list[bpf.Insn], nr: int, args: tuple[int, ...] = (),
        arch: int = AUDIT_ARCH_X86_64) -> int:
    """Execute a classic-BPF seccomp program on one seccomp_data (little endian)."""
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
        elif code == bpf.JGT_K:
            pc += jt if acc > k else jf
        elif code == bpf.JA:
            pc += k
        elif code == bpf.RET_K:
            return k
        else:
            raise AssertionError(f"unknown opcode {code:#x}")
        pc += 1


X86 = bpf.X86_64


def test_runtime_default_is_an_allow_list() -> None:
    prog = program(runtime_default(caps.DEFAULT_CAPABILITIES))
    eperm = bpf.RET_ERRNO | errno.EPERM
    for name in ("read", "write", "openat", "execve", "exit_group", "rt_sigreturn", "wait4",
                 "arch_prctl", "futex", "getdents64", "newfstatat", "ptrace"):
        assert run(prog, SYSCALLS[name]) == bpf.RET_ALLOW, name
    # outside the list, or capability-conditioned on a capability not in the set
    for name in ("mount", "umount2", "unshare", "setns", "pivot_root", "kexec_load", "bpf",
                 "init_module", "reboot", "keyctl", "add_key", "swapon", "settimeofday",
                 "perf_event_open", "open_by_handle_at", "userfaultfd", "fsopen", "vhangup",
                 "syslog", "mbind", "iopl", "acct", "kcmp", "lookup_dcookie"):
        assert run(prog, SYSCALLS[name]) == eperm, name
    assert run(prog, SYSCALLS["chroot"]) == bpf.RET_ALLOW  # CAP_SYS_CHROOT is a default
    assert run(prog, SYSCALLS["clone3"]) == bpf.RET_ERRNO | errno.ENOSYS
    assert run(prog, SYSCALLS["clone"], (0x11,)) == bpf.RET_ALLOW  # SIGCHLD: a plain fork
    assert run(prog, SYSCALLS["clone"], (0x3D0F00,)) == bpf.RET_ALLOW  # pthread_create
    for flag in (CLONE_NEWNET, CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWCGROUP):
        assert run(prog, SYSCALLS["clone"], (flag | 0x11,)) == eperm
    assert run(prog, SYSCALLS["read"], arch=0x40000003) == bpf.RET_KILL_PROCESS  # i386
    assert run(prog, SYSCALLS["read"] | 0x40000000) == bpf.RET_KILL_PROCESS  # x32


def test_runtime_default_socket_and_personality() -> None:
    prog = program(runtime_default(caps.DEFAULT_CAPABILITIES))
    eperm = bpf.RET_ERRNO | errno.EPERM
    for family in (1, 2, 10, 16, 17, 37, 39, 41, 44):  # unix, inet, inet6, netlink, packet...
        assert run(prog, SYSCALLS["socket"], (family, 1, 0)) == bpf.RET_ALLOW, family
    assert run(prog, SYSCALLS["socket"], (seccomp_default.AF_VSOCK, 1, 0)) == eperm
    assert run(prog, SYSCALLS["socket"], (seccomp_default.AF_ALG, 5, 0)) == eperm
    assert run(prog, SYSCALLS["socket"], (1 << 32 | 2, 1, 0)) == bpf.RET_ALLOW  # > AF_VSOCK
    for persona in seccomp_default.PERSONAS:
        assert run(prog, SYSCALLS["personality"], (persona,)) == bpf.RET_ALLOW
    assert run(prog, SYSCALLS["personality"], (0x0400000,)) == eperm  # ADDR_NO_RANDOMIZE


def test_runtime_default_follows_the_capabilities() -> None:
    admin = program(runtime_default((*caps.DEFAULT_CAPABILITIES, "SYS_ADMIN", "sys_ptrace",
                                     "CAP_SYS_TIME")))
    for name in ("mount", "unshare", "setns", "sethostname", "kcmp", "clock_settime",
                 "process_madvise", "clone3"):
        assert run(admin, SYSCALLS[name]) == bpf.RET_ALLOW, name
    assert run(admin, SYSCALLS["clone"], (CLONE_NEWNET | 0x11,)) == bpf.RET_ALLOW
    bare = program(runtime_default(()))
    assert run(bare, SYSCALLS["chroot"]) == bpf.RET_ERRNO | errno.EPERM
    assert run(bare, SYSCALLS["read"]) == bpf.RET_ALLOW


def test_allow_list_compiles_compactly_for_both_architectures() -> None:
    rules = [bpf.Rule(syscall=n, action=bpf.RET_ALLOW) for n in seccomp_default.ALLOWED]
    for arch in (bpf.X86_64, bpf.AARCH64):
        prog = bpf.compile_filter(rules, bpf.RET_ERRNO | 1, arch=arch)
        known = {n for n in seccomp_default.ALLOWED if n in arch.syscalls}
        assert len(prog) < len(known) + 20
        for name in known:
            assert run(prog, arch.syscalls[name], arch=arch.audit) == bpf.RET_ALLOW, name
        allowed = set(known)
        for name, nr in arch.syscalls.items():
            if name not in allowed:
                assert run(prog, nr, arch=arch.audit) == bpf.RET_ERRNO | 1, name
        other = bpf.AARCH64 if arch is bpf.X86_64 else bpf.X86_64
        assert run(prog, 0, arch=other.audit) == bpf.RET_KILL_PROCESS
    # aarch64 numbers are not x86_64's: a sample checked against asm-generic/unistd.h
    assert (bpf.AARCH64.syscalls["openat"], bpf.AARCH64.syscalls["clone"],
            bpf.AARCH64.syscalls["newfstatat"], bpf.AARCH64.syscalls["mmap"]) == (56, 220, 79, 222)
    assert "open" not in bpf.AARCH64.syscalls and "arch_prctl" not in bpf.AARCH64.syscalls


def test_first_matching_rule_per_syscall() -> None:
    rules = [bpf.Rule("kill", bpf.RET_ERRNO | 3, (bpf.Condition(1, "SCMP_CMP_EQ", 9),)),
             bpf.Rule("kill", bpf.RET_ALLOW),
             bpf.Rule("kill", bpf.RET_ERRNO | 4),  # unreachable: an unconditional rule is above
             bpf.Rule("read", bpf.RET_ALLOW), bpf.Rule("read", bpf.RET_ERRNO | 5)]
    prog = bpf.compile_filter(rules, bpf.RET_ERRNO | 1, arch=X86)
    assert run(prog, SYSCALLS["kill"], (1, 9)) == bpf.RET_ERRNO | 3
    assert run(prog, SYSCALLS["kill"], (1, 15)) == bpf.RET_ALLOW
    assert run(prog, SYSCALLS["read"]) == bpf.RET_ALLOW
    assert run(prog, SYSCALLS["write"]) == bpf.RET_ERRNO | 1


@pytest.mark.parametrize("op,value", [("SCMP_CMP_LT", 1 << 32 | 5), ("SCMP_CMP_LE", 1 << 32 | 5),
                                      ("SCMP_CMP_GT", 1 << 32 | 5), ("SCMP_CMP_GE", 1 << 32 | 5),
                                      ("SCMP_CMP_GT", 7), ("SCMP_CMP_LT", 0xFFFFFFFF)])
def test_ordered_comparisons_on_64_bit_arguments(op: str, value: int) -> None:
    check = {"SCMP_CMP_LT": lambda a: a < value, "SCMP_CMP_LE": lambda a: a <= value,
             "SCMP_CMP_GT": lambda a: a > value, "SCMP_CMP_GE": lambda a: a >= value}[op]
    prog = bpf.compile_filter([bpf.Rule("read", bpf.RET_ALLOW,
                                        (bpf.Condition(2, op, value),))], bpf.RET_ERRNO | 1,
                              arch=X86)
    for arg in (0, 4, 5, 6, 7, 8, value - 1, value, value + 1, 1 << 32, 2 << 32 | 5,
                0xFFFFFFFF, 1 << 63):
        want = bpf.RET_ALLOW if check(arg) else bpf.RET_ERRNO | 1
        assert run(prog, SYSCALLS["read"], (0, 0, arg)) == want, (op, value, arg)


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
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_BOGUS"}]}]}, source="t")
    with pytest.raises(InvalidArgument, match="action"):
        parse_profile({"defaultAction": "SCMP_ACT_NOTIFY"}, source="t")
    with pytest.raises(InvalidArgument, match="defaultAction"):
        parse_profile({"syscalls": []}, source="t")
    with pytest.raises(InvalidArgument, match="X86_64"):
        parse_profile({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_ARM"]},
                      source="t")
