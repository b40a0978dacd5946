"""A `/bin/sh` that looks commands up in $PATH, for critest's default image.

Debian's busybox-static is built with FEATURE_SH_STANDALONE: its `sh` runs `ls` (any
applet) from its own binary and never looks at /bin/ls. Upstream's busybox image is not
built that way, and critest's MaskedPaths spec depends on it: it masks /bin/ls and expects
`/bin/sh -c ls` to fail with exactly "/bin/sh: ls: Permission denied". Debian's other
busybox, the dynamically linked `busybox` package, has no standalone shell. It conflicts with
busybox-static, so it is not installed: its .deb is downloaded into a cache (`make deps`,
or here on first use, with `apt-get download busybox`) and its binary read out of the
package with dpkg-deb. It goes into the image as /bin/sh with the shared libraries it needs,
copied from this host at the paths ldd names (the same Debian release built both).
"""
from __future__ import annotations

import functools
import io
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

from tests.harness.oci_layer import Entry, directory, file

DEB_CACHE = Path(os.environ.get("KUBELET_PY_DEB_CACHE",
                                Path.home() / ".cache" / "kubelet-py" / "debs"))
PACKAGE = "busybox"
BINARY = "./bin/busybox"


class ShellUnavailable(RuntimeError):
    """Debian's dynamic busybox package could not be found or fetched."""


def package_file() -> Path:
    """The cached busybox .deb; fetched with `apt-get download` when the cache has none."""
    found = sorted(DEB_CACHE.glob(f"{PACKAGE}_*.deb"))
    if not found:
        DEB_CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=DEB_CACHE) as tmp:  # never a half-written .deb
            done = subprocess.run(["apt-get", "download", "-q", PACKAGE], cwd=tmp,
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:  # no package lists yet on a fresh machine
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
                done = subprocess.run(["apt-get", "download", "-q", PACKAGE], cwd=tmp,
                                      capture_output=True, text=True, check=False)
            for deb in Path(tmp).glob(f"{PACKAGE}_*.deb"):
                os.replace(deb, DEB_CACHE / deb.name)
        found = sorted(DEB_CACHE.glob(f"{PACKAGE}_*.deb"))
        if done.returncode != 0 or not found:
            raise ShellUnavailable(
                f"Debian's {PACKAGE} package is not in {DEB_CACHE} and `apt-get download "
                f"{PACKAGE}` failed ({done.stderr.strip()}): run `make deps` with network")
    return found[-1]


@functools.cache
def path_shell() -> bytes:
    """The dynamically linked busybox binary out of Debian's busybox package."""
    deb = package_file()
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                         check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        member = t.extractfile(BINARY)
        if member is None:
            raise ShellUnavailable(f"{deb} has no {BINARY}")
        return member.read()


_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def shared_libraries(binary: bytes) -> list[tuple[str, bytes]]:
    """(absolute path, content) of every shared object `binary` loads (its interpreter
    included), as this host's ldd resolves them."""
    with tempfile.NamedTemporaryFile(prefix="kpy-sh-") as f:
        f.write(binary)
        f.flush()
        os.chmod(f.name, 0o755)
        out = subprocess.run(["ldd", f.name], capture_output=True, text=True,
                             check=True).stdout
    libs = []
    for line in out.splitlines():
        m = _LDD_PATH.search(line)
        if m:
            path = m.group(1)
            libs.append((path, Path(path).read_bytes()))  # read through symlinks
    if not libs:
        raise ShellUnavailable(f"ldd found no shared objects for the busybox shell: {out}")
    return libs


def shell_entries() -> list[Entry]:
    """A layer's entries: /bin/sh (the PATH-searching shell) and its libraries."""
    binary = path_shell()
    entries: list[Entry] = []
    made = {"bin"}
    for path, data in shared_libraries(binary):
        rel = path.lstrip("/")
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                made.add(d)
                entries.append(directory(d))
        entries.append(file(rel, data, mode=0o755))
    entries.append(file("bin/sh", binary, mode=0o755))
    return entries
