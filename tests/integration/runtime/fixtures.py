"""Shared by the runtime and execdriver integration tests: a busybox rootfs built from
Debian's busybox-static, and a Runtime on a private run dir and cgroup root."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cgroups.detect import manager
from engine.runtime.api import Runtime
from engine.runtime.context import RuntimeOptions
from engine.runtime.sandbox import mounts_under
from engine.runtime.spec import ContainerConfig, ImageConfig, Rootfs, SandboxConfig
from engine.runtime.state import ContainerState
from engine.shim.spawner import stop_zygote
from tests.harness.prereq import need, need_binary, need_root

APPLETS = ("sh", "ls", "cat", "echo", "id", "sleep", "true", "false", "hostname", "grep",
           "head", "tail", "mkdir", "touch", "stat", "readlink", "printf", "nc", "dd", "stty",
           "wc", "env", "pwd", "mount", "yes", "unshare", "seq", "sed", "ln")
DRIVERS = ("native", "runc", "crun")


def busybox_rootfs(root: Path) -> Path:
    busybox = need_binary("busybox", "apt-get install busybox-static")
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/app"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "app:x:1000:1000:app:/home/app:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/:/bin/sh\n")
    (root / "etc" / "group").write_text(
        "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n")
    return root


def need_driver(handler: str) -> None:
    if handler in {"runc", "crun"}:
        need_binary(handler, f"apt-get install {handler}")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return busybox_rootfs(tmp_path / "rootfs")


@pytest.fixture
def runtime_env(tmp_path: Path) -> Iterator[tuple[RuntimeOptions, list[Runtime]]]:
    """Options on a private run dir and cgroup root; every sandbox left behind is removed."""
    cgroup_root = f"kubelet-py-test-{secrets.token_hex(4)}"
    options = RuntimeOptions(run_root=tmp_path / "run", cgroup_root=cgroup_root)
    made: list[Runtime] = []
    yield options, made
    rt = Runtime(options)
    for info in rt.list_sandboxes():
        rt.remove_sandbox(info.record.id)
    cgroups = manager()
    if cgroups.exists(cgroup_root):
        cgroups.destroy(cgroup_root)
    assert mounts_under(options.run_root) == []  # nothing leaked: no ns, shm, rootfs mounts
    stop_zygote(options.run_root)
    deadline = time.monotonic() + 60
    while (users := processes_using(options.run_root)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert users == [], users  # no monitor (cwd, monitor.log), no zygote (zygote.log)


def processes_using(root: Path) -> list[str]:
    """Processes whose working directory or an open file is under `root`."""
    prefix = str(root) + "/"
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            links = [proc / "cwd", *(proc / "fd").iterdir()]
            targets = [os.readlink(link) for link in links]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        found += [f"{proc.name}: {t}" for t in targets if (t + "/").startswith(prefix)]
    return found


@contextlib.contextmanager
def searchable_runtime() -> Iterator[Runtime]:
    """A Runtime whose run root an unprivileged uid can reach (o+x up to it, as pods with
    their own user namespace need: not below pytest's 0700 tmp dirs); every sandbox, cgroup
    and mount it made is removed, and a leaked mount fails the test."""
    need_root()
    base = Path(f"/run/kubelet-py-test-{secrets.token_hex(4)}")
    base.mkdir(mode=0o711)
    base.chmod(0o711)
    cgroup_root = f"kubelet-py-test-{secrets.token_hex(4)}"
    rt = Runtime(RuntimeOptions(run_root=base / "run", cgroup_root=cgroup_root))
    try:
        yield rt
    finally:
        for info in rt.list_sandboxes():
            rt.remove_sandbox(info.record.id)
        leaked = mounts_under(base)
        if manager().exists(cgroup_root):
            manager().destroy(cgroup_root)
        shutil.rmtree(base, ignore_errors=True)
        assert leaked == []  # no ns, rootfs, layer or volume mount left


@pytest.fixture
def runtime(runtime_env: tuple[RuntimeOptions, list[Runtime]]) -> Runtime:
    rt = Runtime(runtime_env[0])
    runtime_env[1].append(rt)
    return rt


def sandbox_config(handler: str = "native", **kw: object) -> SandboxConfig:
    need_driver(handler)
    base: dict[str, object] = {"name": f"pod-{secrets.token_hex(3)}", "namespace": "test",
                               "uid": secrets.token_hex(8), "hostname": "testpod",
                               "runtime_handler": handler}
    base.update(kw)
    return SandboxConfig(**base)  # type: ignore[arg-type]


def run_to_exit(rt: Runtime, sid: str, rootfs: Path, script: str, *,
                timeout: float = 30, **kw: object) -> tuple[ContainerState, str]:
    """Run `sh -c script` to completion; (final state, the log's content lines)."""
    config = ContainerConfig(name=f"c-{secrets.token_hex(3)}",
                             command=("/bin/sh", "-c", script), **kw)  # type: ignore[arg-type]
    cid = rt.create_container(sid, config, rootfs=Rootfs(directory=str(rootfs)),
                              image=ImageConfig())
    rt.start_container(cid)
    state = rt.wait_container(cid, timeout=timeout)
    return state, log_text(rt, cid)


def log_text(rt: Runtime, cid: str) -> str:
    path = Path(rt.container_status(cid).record.log_path)
    lines = path.read_text().splitlines() if path.exists() else []
    return "\n".join(line.split(" ", 3)[3] for line in lines if line.count(" ") >= 3)


def need_cgroup_v1() -> None:
    need(Path("/sys/fs/cgroup/memory").is_dir(), "cgroup v1 memory controller", "a v1 host")
