"""Linux capability names and numbers (facts from linux/capability.h)."""
from __future__ import annotations

from engine.errors import InvalidArgument

CAPABILITIES: dict[str, int] = {
    name: number for number, name in enumerate((
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
        "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
        "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ))
}

# containerd's CRI default capability set.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


def normalize(name: str) -> str:
    """"net_admin", "NET_ADMIN" and "CAP_NET_ADMIN" all name CAP_NET_ADMIN."""
    upper = name.strip().upper()
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if full not in CAPABILITIES:
        raise InvalidArgument(f"unknown capability {name!r}")
    return full


def to_mask(names: tuple[str, ...] | list[str]) -> int:
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITIES[normalize(name)]
    return mask


def from_mask(mask: int) -> tuple[str, ...]:
    return tuple(name for name, nr in CAPABILITIES.items() if mask & (1 << nr))


def current_bounding() -> tuple[str, ...]:
    """The capabilities this process may still hand out (its bounding set)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return from_mask(int(line.split()[1], 16))
    return ()
