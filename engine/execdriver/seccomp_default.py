"""The RuntimeDefault seccomp profile: an allow-list, as containerd's default profile is.

Every syscall not listed fails with EPERM. On top of the plain list: calls a capability in
the container's bounding set makes meaningful (mount & co. with CAP_SYS_ADMIN, ptrace's
relatives with CAP_SYS_PTRACE, ...), clone only without namespace flags (unless
CAP_SYS_ADMIN), clone3 failing with ENOSYS instead (its flags live in memory BPF cannot read;
libc then falls back to clone), socket for every address family but AF_ALG and AF_VSOCK,
and personality for the few harmless personas. The syscall names are the published facts of
containerd's profile; names unknown to an architecture's table are skipped when compiling.
"""
from __future__ import annotations

import errno
from collections.abc import Iterable

from engine.execdriver.spec import Seccomp, SeccompArg, SeccompRule
from engine.sys import caps
from engine.sys import linux as L


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ALLOWED = _words("""
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod
fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32
getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage
getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr
inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy
io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc
kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat
lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat
mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap
msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep
newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead
readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages
removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask
sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat
sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate
truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes
vfork vmsplice wait4 waitid waitpid write writev
process_vm_readv process_vm_writev ptrace
arch_prctl modify_ldt
""")

# Allowed when the capability is in the bounding set.
BY_CAPABILITY: dict[str, tuple[str, ...]] = {
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_ADMIN": ("bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount",
                      "fsopen", "fspick", "lookup_dcookie", "mount", "mount_setattr",
                      "move_mount", "open_tree", "perf_event_open", "quotactl", "quotactl_fd",
                      "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2",
                      "unshare"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                       "process_vm_writev", "ptrace"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}

AF_ALG, AF_VSOCK = 38, 40
# personality(2) personas allowed: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and
# 0xffffffff (a query).
PERSONAS = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)
# clone(2) flags that make namespaces (CLONE_NEWTIME is left out: clone's low byte is the
# exit signal, and the kernel refuses that flag in clone anyway)
NAMESPACE_MASK = (L.CLONE_NEWNS | L.CLONE_NEWUTS | L.CLONE_NEWIPC | L.CLONE_NEWUSER
                  | L.CLONE_NEWPID | L.CLONE_NEWNET | L.CLONE_NEWCGROUP)


def _allow(*names: str, args: tuple[SeccompArg, ...] = ()) -> SeccompRule:
    return SeccompRule(names=names, action="SCMP_ACT_ALLOW", args=args)


def profile(capabilities: Iterable[str]) -> Seccomp:
    """RuntimeDefault for a container whose bounding set is `capabilities`."""
    bounding = {caps.normalize(c) for c in capabilities}
    rules = [
        _allow(*ALLOWED),
        # socket(2) for every family below AF_ALG, between AF_ALG and AF_VSOCK, and above
        _allow("socket", args=(SeccompArg(index=0, value=AF_ALG, op="SCMP_CMP_LT"),)),
        _allow("socket", args=(SeccompArg(index=0, value=AF_ALG + 1, op="SCMP_CMP_EQ"),)),
        _allow("socket", args=(SeccompArg(index=0, value=AF_VSOCK, op="SCMP_CMP_GT"),)),
    ]
    rules += [_allow("personality", args=(SeccompArg(index=0, value=p, op="SCMP_CMP_EQ"),))
              for p in PERSONAS]
    for cap, names in BY_CAPABILITY.items():
        if cap in bounding:
            rules.append(_allow(*names))
    if "CAP_SYS_ADMIN" not in bounding:
        rules.append(_allow("clone", args=(SeccompArg(index=0, value=NAMESPACE_MASK,
                                                      value_two=0, op="SCMP_CMP_MASKED_EQ"),)))
        rules.append(SeccompRule(names=("clone3",), action="SCMP_ACT_ERRNO",
                                 errno=errno.ENOSYS))
    return Seccomp(default_action="SCMP_ACT_ERRNO", rules=tuple(rules),
                   default_errno=errno.EPERM)
