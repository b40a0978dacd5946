"""critest's default image has a /bin/sh that searches $PATH (tests.harness.images_shell):
the layer's contents, and the shell's behaviour run straight from the layer's bytes."""
from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.harness import images, images_shell
from tests.harness import images_build as b
from tests.harness.oci_layer import Kind
from tests.harness.prereq import need


@pytest.fixture(scope="module")
def shell() -> bytes:
    try:
        return images_shell.path_shell()
    except images_shell.ShellUnavailable as e:
        need(False, f"Debian's busybox package ({e})", "make deps")
        raise


def test_critest_default_image_is_the_base_plus_the_shell_layer(shell: bytes) -> None:
    image = b.path_shell_busybox()
    assert image.layers[0] == b.base_layer()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(image.layers[1].blob))) as t:
        members = {m.name: m for m in t.getmembers()}
        sh = t.extractfile("bin/sh")
        assert sh is not None and sh.read() == shell
    assert members["bin/sh"].isreg() and members["bin/sh"].mode == 0o755
    interpreters = [n for n in members if n.startswith("lib64/ld-linux")]
    assert interpreters and members[interpreters[0]].isreg()
    assert any(n.endswith("/libc.so.6") for n in members)
    default = next(m for m in images.MIRRORED
                   if m.upstream == images.E2E + "busybox:1.29-2")
    assert default.build is b.path_shell_busybox


def test_every_library_the_shell_loads_is_in_the_layer(shell: bytes) -> None:
    entries = images_shell.shell_entries()
    paths = {e.path for e in entries if e.kind is Kind.FILE}
    for path, _ in images_shell.shared_libraries(shell):
        assert path.lstrip("/") in paths
    dirs = {e.path for e in entries if e.kind is Kind.DIR}
    for p in paths:  # every parent directory is in the layer (bin comes from the base)
        parent = os.path.dirname(p)
        assert parent == "bin" or parent in dirs


def test_the_shell_looks_commands_up_in_path(shell: bytes, tmp_path: Path) -> None:
    """What critest's MaskedPaths spec relies on: `ls` is found in $PATH, not run as a
    built-in applet, and a match that cannot be executed (the masked /bin/ls is a device
    node) is "Permission denied" in exactly the words of upstream's busybox."""
    sh = tmp_path / "sh"
    sh.write_bytes(shell)
    sh.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.mkfifo(bin_dir / "ls")  # not a regular file, like a /dev/null bind mount
    done = subprocess.run([str(sh), "-c", "ls"], env={"PATH": str(bin_dir)},
                          capture_output=True, check=False)
    assert done.returncode != 0
    assert done.stderr == f"{sh}: ls: Permission denied\n".encode()
    os.unlink(bin_dir / "ls")
    (bin_dir / "ls").write_text("#!/bin/sh\necho from-path\n")
    (bin_dir / "ls").chmod(0o755)
    done = subprocess.run([str(sh), "-c", "ls"], env={"PATH": f"{bin_dir}:/bin"},
                          capture_output=True, check=False)
    assert done.stdout == b"from-path\n"
