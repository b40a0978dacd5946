"""Root filesystems for the test images, made from Debian's busybox-static.

The base is what a `busybox` image holds: /bin/busybox plus one hardlink per applet in
/bin, a few absolute symlinks in /usr/bin, the usual empty directories, and /etc/passwd and
/etc/group with root, nobody, www-data and an unprivileged `user` (uid 1000).
"""
from __future__ import annotations

import functools
import os
import struct
import subprocess
from pathlib import Path

from tests.harness.oci_layer import Entry, directory, file, hardlink, symlink

BUSYBOX = Path(os.environ.get("KUBELET_PY_BUSYBOX", "/bin/busybox"))

# Applets the test images promise; building fails with a clear message if one is missing.
REQUIRED_APPLETS = (
    "sh", "sleep", "httpd", "nc", "cat", "echo", "ls", "true", "false", "id", "env", "ps",
    "wget", "top", "pidof", "grep", "hostname", "touch", "mkdir", "rm", "ip", "kill",
    "mount", "seq", "head", "tail", "stat", "test", "uname", "whoami", "printf",
)
# Applets also reachable through an absolute symlink in /usr/bin (images commonly have both).
USR_BIN_SYMLINKS = ("env", "wget", "top")

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "www-data:x:33:33:www-data:/var/www:/bin/false\n"
    "user:x:1000:1000:user:/home/user:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = (
    "root:x:0:\n"
    "www-data:x:33:\n"
    "users:x:100:user\n"
    "user:x:1000:\n"
    "nogroup:x:65534:\n"
)


class BusyboxUnavailable(RuntimeError):
    """busybox-static is missing or lacks an applet the images need."""


@functools.cache
def busybox_binary() -> bytes:
    if not BUSYBOX.is_file():
        raise BusyboxUnavailable(f"{BUSYBOX} not found: install Debian's busybox-static "
                                 "(apt-get install busybox-static)")
    return BUSYBOX.read_bytes()


@functools.cache
def busybox_applets() -> tuple[str, ...]:
    out = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    applets = tuple(sorted(a for a in out.stdout.split() if a and "/" not in a))
    missing = [a for a in REQUIRED_APPLETS if a not in applets]
    if missing:
        raise BusyboxUnavailable(f"{BUSYBOX} lacks applets {missing}: use busybox-static")
    return applets


def base_rootfs() -> list[Entry]:
    """Entries of the base busybox layer."""
    entries: list[Entry] = [
        directory("bin"), directory("dev"), directory("etc"), directory("home"),
        directory("home/user", uid=1000, gid=1000), directory("proc"),
        directory("root", mode=0o700), directory("run"), directory("sys"),
        directory("tmp", mode=0o1777), directory("usr"), directory("usr/bin"),
        directory("usr/sbin"), directory("usr/local"), directory("usr/local/bin"),
        directory("var"), directory("var/run"), directory("var/www"),
        file("bin/busybox", busybox_binary(), mode=0o755),
        file("etc/passwd", PASSWD.encode()),
        file("etc/group", GROUP.encode()),
        file("etc/hostname", b"kubelet-py-test\n"),
        file("var/www/index.html", b"<html><body>kubelet-py test image</body></html>\n"),
    ]
    for applet in busybox_applets():
        if applet != "busybox":
            entries.append(hardlink(f"bin/{applet}", "bin/busybox"))
    for applet in USR_BIN_SYMLINKS:
        entries.append(symlink(f"usr/bin/{applet}", f"/bin/{applet}"))
    if "ipcs" not in busybox_applets():
        entries.append(script("bin/ipcs", IPCS_SCRIPT))
    if "pgrep" not in busybox_applets():
        entries.append(script("bin/pgrep", PGREP_SCRIPT))
    return entries


# Debian's busybox-static has no `ipcs` applet; critest's IPC-namespace specs run
# `ipcs -m`. This stand-in prints the shared memory table from /proc/sysvipc/shm in the
# layout of util-linux/busybox `ipcs -m`; other options fail with a precise message.
IPCS_SCRIPT = """\
case "${1:--m}" in
  -m) ;;
  *) echo "ipcs: only -m is supported by this image's ipcs" >&2; exit 1 ;;
esac
echo
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
awk 'NR > 1 { k = ($1 < 0) ? $1 + 4294967296 : $1
  printf "0x%04x%04x %-10s %-10s %-10s %-10s %-10s\\n", \\
    int(k / 65536), k % 65536, $2, $8, $3, $4, $7 }' /proc/sysvipc/shm
"""

# Nor has it `pgrep`; critest's ExecSync-timeout spec runs `pgrep sleep` to check that the
# timed-out command is gone. This stand-in supports `pgrep PATTERN`: the PIDs (but its own)
# whose process name (/proc/<pid>/comm) matches the extended regular expression; exit 1
# when none does, 2 on usage errors, as procps and busybox do.
PGREP_SCRIPT = """\
if [ $# -ne 1 ] || [ "${1#-}" != "$1" ]; then
  echo "pgrep: only 'pgrep PATTERN' is supported by this image's pgrep" >&2; exit 2
fi
status=1
for dir in /proc/[0-9]*; do
  pid=${dir#/proc/}
  [ "$pid" = "$$" ] && continue
  { read -r comm < "$dir/comm"; } 2>/dev/null || continue  # gone meanwhile
  if printf '%s\\n' "$comm" | grep -Eq -e "$1"; then echo "$pid"; status=0; fi
done
exit $status
"""


def script(path: str, body: str) -> Entry:
    return file(path, ("#!/bin/sh\n" + body).encode(), mode=0o755)


# A static x86-64 program: prints "Effective uid: <geteuid()>\n" in one write(2) and exits.
# Assembled from (Intel syntax): mov eax,107; syscall; convert eax to decimal backwards on
# the stack, newline last; copy the 15-byte prefix in front of the digits from a RIP-relative
# string; write(1, buf, len); exit(0). Used setuid-root for the no_new_privs test image.
_NNP_X86_64 = bytes.fromhex(
    "b86b0000000f0589c34883ec40488d7c243fc6070ab90a00000048ffcf31d289d8f7f180c230881789c3"
    "85c075ec488d3542000000b90f00000048ffce48ffcf8a068807ffc975f2488d5424404829fa4889fe"
    "bf01000000b8010000000f0531ffb83c0000000f05456666656374697665207569643a20"
)


def effective_uid_program(arch: str) -> bytes:
    """A minimal ELF64 executable (one PT_LOAD segment) around the code above."""
    if arch != "amd64":
        raise NotImplementedError(f"the effective-uid test program exists only for amd64, "
                                  f"not {arch}")
    base, ehsize, phsize = 0x400000, 64, 56
    code = _NNP_X86_64
    total = ehsize + phsize + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little endian, SysV
    header = ident + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + ehsize + phsize,
                                 ehsize, 0, 0, ehsize, phsize, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, total, total, 0x1000)
    return header + program + code
