from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.errors import InvalidArgument, NotFound
from engine.runtime.files import hosts, resolv_conf, write_sandbox_files
from engine.runtime.sandbox import check_sysctls
from engine.runtime.spec import DNSConfig, SandboxConfig
from engine.runtime.store import Store
from engine.shim import attach
from engine.shim.procs import exit_reason


def _config(**kw: object) -> SandboxConfig:
    return SandboxConfig(name="p", namespace="n", uid="u", **kw)  # type: ignore[arg-type]


def test_sysctls_only_namespaced_ones() -> None:
    check_sysctls(_config(sysctls={"net.ipv4.ip_forward": "1", "kernel.shmmax": "1"}))
    with pytest.raises(InvalidArgument, match="not namespaced"):
        check_sysctls(_config(sysctls={"vm.swappiness": "1"}))
    with pytest.raises(InvalidArgument, match="host's net"):
        check_sysctls(_config(host_network=True, sysctls={"net.core.somaxconn": "1"}))
    with pytest.raises(InvalidArgument, match="host's ipc"):
        check_sysctls(_config(host_ipc=True, sysctls={"kernel.msgmax": "1"}))


def test_resolv_conf_and_hosts(tmp_path: Path) -> None:
    assert resolv_conf(DNSConfig(servers=("1.2.3.4",), searches=("a", "b"))) == \
        "nameserver 1.2.3.4\nsearch a b\n"
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 9.9.9.9\n")
    assert resolv_conf(None, host_file=host) == "nameserver 9.9.9.9\n"
    assert hosts("web", ("10.0.0.5",)).splitlines()[-1] == "10.0.0.5\tweb"


def test_exit_reasons() -> None:
    assert exit_reason(0, oom=False) == (0, "Completed")
    assert exit_reason(3 << 8, oom=False) == (3, "Error")
    assert exit_reason(9, oom=True) == (137, "OOMKilled")  # killed by SIGKILL
    assert exit_reason(9, oom=False) == (137, "Error")
    assert exit_reason(15, oom=True) == (143, "Error")


def test_attach_frames_roundtrip() -> None:
    reader = attach.FrameReader()
    data = attach.frame(attach.STDIN, b"abc") + attach.frame(
        attach.RESIZE, attach.resize_payload(80, 24))
    assert reader.feed(data[:5]) == []
    got = reader.feed(data[5:])
    assert got[0] == (attach.STDIN, b"abc")
    assert attach.parse_resize(got[1][1]) == (80, 24)
    with pytest.raises(ValueError):
        attach.FrameReader().feed(b"\x00\xff\xff\xff\xff")


def test_store_prefix_resolution_and_bad_ids(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ids = ["abc123", "abd456"]
    assert store.resolve("abc", ids, what="container") == "abc123"
    with pytest.raises(NotFound, match="ambiguous"):
        store.resolve("ab", ids, what="container")
    with pytest.raises(NotFound):
        store.resolve("zz", ids, what="container")
    with pytest.raises(InvalidArgument):
        store.sandbox_dir("../etc")
    with pytest.raises(NotFound):
        store.load_sandbox("missing")


def test_api_turns_os_errors_into_engine_errors(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.cgroups.v2 import CgroupV2
    from engine.errors import Unavailable
    from engine.runtime import sandbox
    from engine.runtime.api import Runtime
    from engine.runtime.context import RuntimeOptions

    def broken(*_: object, **__: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sandbox, "reserve", broken)
    rt = Runtime(RuntimeOptions(run_root=tmp_path), cgroups=CgroupV2(tmp_path / "cg"))
    with pytest.raises(Unavailable, match="No space left"):
        rt.run_sandbox(_config())
    assert rt.list_sandboxes() == []


def test_sandbox_files_are_readable_by_a_non_root_container_user(tmp_path: Path) -> None:
    old = os.umask(0o077)  # a strict daemon umask must not make them root-only
    try:
        write_sandbox_files(tmp_path, hostname="h", ips=("10.0.0.2",), dns=None)
    finally:
        os.umask(old)
    for name in ("hostname", "hosts", "resolv.conf"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


@pytest.mark.parametrize("shared", [True, False])
def test_a_stuck_shared_monitor_is_not_killed_for_one_pod(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: bool) -> None:
    from engine.runtime import sandbox
    from engine.shim import protocol as P

    mine, other = tmp_path / "a", tmp_path / "b"
    for d, pid in ((mine, 4242), (other, 4242 if shared else 4343)):
        d.mkdir()
        (d / P.PIDFILE).write_text(str(pid))
    killed: list[int] = []
    monkeypatch.setattr(sandbox, "monitor_alive", lambda d: True)  # it never lets go
    monkeypatch.setattr(sandbox.MonitorClient, "call", lambda self, op, **kw: {})
    monkeypatch.setattr(sandbox.os, "kill", lambda pid, sig: killed.append(pid))
    sandbox.shutdown_monitor(mine, timeout=0.05)
    assert killed == ([] if shared else [4242])
