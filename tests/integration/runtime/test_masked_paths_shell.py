"""critest's MaskedPaths spec end to end, with each driver: in a rootfs whose /bin/sh is the
PATH-searching shell of critest's default image (tests.harness.images_shell), masking
/bin/ls makes `/bin/sh -c ls` fail with exactly upstream busybox's words."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.runtime.api import Runtime
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs, SecurityConfig
from engine.runtime.status import Status
from tests.harness import images_shell
from tests.harness.oci_layer import Kind
from tests.harness.prereq import need
from tests.integration.runtime.fixtures import (
    DRIVERS,
    busybox_rootfs,
    runtime,
    runtime_env,
    sandbox_config,
)

pytestmark = pytest.mark.integration
__all__ = ["runtime", "runtime_env"]  # fixtures


def _critest_rootfs(root: Path) -> Path:
    busybox_rootfs(root)
    try:
        entries = images_shell.shell_entries()
    except images_shell.ShellUnavailable as exc:
        need(False, f"Debian's busybox package ({exc})", "make deps")
        raise
    (root / "bin" / "sh").unlink()  # a symlink to busybox-static in the fixture
    # as in the image: /bin/ls a hardlink, so a bind mount over it masks that name only
    (root / "bin" / "ls").unlink()
    os.link(root / "bin" / "busybox", root / "bin" / "ls")
    for entry in entries:
        path = root / entry.path
        if entry.kind is Kind.DIR:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.write_bytes(entry.data)
            os.chmod(path, entry.mode)
    return root


@pytest.mark.parametrize("handler", DRIVERS)
def test_masked_ls_is_permission_denied_for_the_shell(runtime: Runtime, tmp_path: Path,
                                                      handler: str) -> None:
    rootfs = _critest_rootfs(tmp_path / "rootfs")
    sid = runtime.run_sandbox(sandbox_config(handler))
    config = ContainerConfig(name="masked", command=("sleep", "600"),
                             security=SecurityConfig(masked_paths=("/bin/ls",)))
    cid = runtime.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                                   image=ImageConfig())
    runtime.start_container(cid)
    deadline = time.monotonic() + 60
    while runtime.container_status(cid).state.status is not Status.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    masked = runtime.exec_sync(cid, ("/bin/sh", "-c", "ls"), timeout=20)
    assert masked.exit_code != 0
    assert masked.stderr == b"/bin/sh: ls: Permission denied\n"
    other = runtime.exec_sync(cid, ("/bin/sh", "-c", "cat /etc/group | head -1"), timeout=20)
    assert (other.exit_code, other.stdout) == (0, b"root:x:0:\n")  # the rest works via PATH
    runtime.stop_container(cid, timeout=0)
