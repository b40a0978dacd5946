"""The init sequence against the recording syscall fake."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.execdriver import nsinit
from engine.execdriver.spec import InitSpec, MountPoint
from engine.sys import linux as L
from engine.sys.fake import FakeSyscalls


def test_bind_mount_with_flags_and_propagation(tmp_path: Path) -> None:
    rootfs = tmp_path / "root"
    rootfs.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    sys = FakeSyscalls()
    nsinit.mount_one(str(rootfs), MountPoint("/data/x", "bind", str(src),
                                             ("rbind", "ro", "nosuid", "rslave")), sys=sys)
    target = str(rootfs / "data" / "x")
    assert os.path.isdir(target)
    assert sys.calls == [
        ("mount", (str(src), target, "", L.MS_BIND | L.MS_REC, "")),
        ("mount", ("", target, "", L.MS_REMOUNT | L.MS_BIND | L.MS_RDONLY | L.MS_NOSUID, "")),
        ("mount", ("", target, "", L.MS_SLAVE | L.MS_REC, "")),
    ]


def test_fs_mount_data_and_file_bind(tmp_path: Path) -> None:
    rootfs = tmp_path / "root"
    rootfs.mkdir()
    f = tmp_path / "hosts"
    f.write_text("x")
    sys = FakeSyscalls()
    nsinit.mount_one(str(rootfs), MountPoint("/dev", "tmpfs", "tmpfs",
                                             ("nosuid", "mode=755", "size=65536k")), sys=sys)
    nsinit.mount_one(str(rootfs), MountPoint("/etc/hosts", "bind", str(f), ("rbind",)), sys=sys)
    assert sys.calls[0] == ("mount", ("tmpfs", str(rootfs / "dev"), "tmpfs", L.MS_NOSUID,
                                      "mode=755,size=65536k"))
    assert (rootfs / "etc" / "hosts").is_file()


def test_symlink_target_out_of_rootfs_refused(tmp_path: Path) -> None:
    rootfs = tmp_path / "root"
    rootfs.mkdir()
    os.symlink("/", rootfs / "proc")
    sys = FakeSyscalls()
    with pytest.raises(InvalidArgument, match="outside"):
        nsinit.mount_one(str(rootfs), MountPoint("/proc", "proc", "proc"), sys=sys)
    assert sys.calls == []


def test_masked_and_readonly_paths(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    f = tmp_path / "file"
    f.write_text("")
    spec = InitSpec(id="c", rootfs="/", args=("x",), masked_paths=(str(d), str(f),
                    str(tmp_path / "absent")), readonly_paths=(str(d),), readonly_rootfs=True)
    sys = FakeSyscalls()
    nsinit.finish_rootfs(spec, sys)
    assert [c[1][:4] for c in sys.calls] == [
        ("tmpfs", str(d), "tmpfs", L.MS_RDONLY),
        ("/dev/null", str(f), "", L.MS_BIND),
        (str(d), str(d), "", L.MS_BIND | L.MS_REC),
        ("", str(d), "", L.MS_REMOUNT | L.MS_BIND | L.MS_RDONLY | L.MS_NOSUID | L.MS_NODEV
         | L.MS_NOEXEC),
        ("", "/", "", L.MS_REMOUNT | L.MS_BIND | L.MS_RDONLY),
    ]


def test_find_executable(tmp_path: Path) -> None:
    exe = tmp_path / "tool"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert nsinit.find_executable("tool", (f"PATH=/nope:{tmp_path}",)) == str(exe)
    with pytest.raises(InvalidArgument, match=r"not found in \$PATH"):
        nsinit.find_executable("missing", (f"PATH={tmp_path}",))
    with pytest.raises(InvalidArgument, match="no such executable"):
        nsinit.find_executable(str(tmp_path / "missing"), ())
