"""Facts about this machine the Node reports (read from /proc, /sys and /etc)."""
from __future__ import annotations

import dataclasses
import fcntl
import os
import platform
import socket
import struct
from pathlib import Path

GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
          "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}


@dataclasses.dataclass(frozen=True)
class MachineInfo:
    hostname: str
    kernel_version: str
    os_image: str
    architecture: str
    boot_id: str
    machine_id: str
    system_uuid: str
    cpus: int
    memory_bytes: int
    ephemeral_storage_bytes: int


@dataclasses.dataclass(frozen=True)
class Usage:
    """What the pressure conditions are judged on."""

    memory_available_bytes: int
    fs_available_bytes: int
    fs_capacity_bytes: int
    pids_in_use: int
    pid_max: int


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def os_image(root: Path) -> str:
    for line in _read(root / "etc/os-release").splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return value.strip().strip('"')
    return "Unknown"


def meminfo(root: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in _read(root / "proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields:
            out[key] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    return out


def disk_bytes(path: Path) -> tuple[int, int]:
    """(capacity, available) of the filesystem holding `path`."""
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def collect_machine(*, state_dir: Path, hostname: str | None = None,
                    root: Path = Path("/")) -> MachineInfo:
    uname = platform.uname()
    capacity, _ = disk_bytes(state_dir)
    return MachineInfo(
        hostname=(hostname or socket.gethostname()).lower(),
        kernel_version=uname.release,
        os_image=os_image(root),
        architecture=GOARCH.get(uname.machine, uname.machine),
        boot_id=_read(root / "proc/sys/kernel/random/boot_id"),
        machine_id=_read(root / "etc/machine-id"),
        system_uuid=_read(root / "sys/class/dmi/id/product_uuid"),
        cpus=len(os.sched_getaffinity(0)),
        memory_bytes=meminfo(root).get("MemTotal", 0),
        ephemeral_storage_bytes=capacity,
    )


def collect_usage(*, state_dir: Path, root: Path = Path("/")) -> Usage:
    capacity, available = disk_bytes(state_dir)
    pids = sum(1 for d in os.listdir(root / "proc") if d.isdigit())
    return Usage(
        memory_available_bytes=meminfo(root).get("MemAvailable", 0),
        fs_available_bytes=available,
        fs_capacity_bytes=capacity,
        pids_in_use=pids,
        pid_max=int(_read(root / "proc/sys/kernel/pid_max", "32768")),
    )


def default_node_ip() -> str | None:
    """The first IPv4 address of the interface holding the default route, if any."""
    iface = None
    for line in _read(Path("/proc/net/route")).splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            iface = fields[0]
            break
    if iface is None:
        return None
    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), siocgifaddr,
                                 struct.pack("256s", iface[:15].encode()))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])
