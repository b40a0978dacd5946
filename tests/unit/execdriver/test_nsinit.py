"""The init sequence against the recording syscall fake."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.execdriver import mountopts, nsinit
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


def _prepare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             mounts: tuple[MountPoint, ...]) -> tuple[FakeSyscalls, str]:
    rootfs = tmp_path / "root"
    rootfs.mkdir()
    monkeypatch.chdir(tmp_path)  # prepare_rootfs chdirs into the rootfs
    sys = FakeSyscalls()
    nsinit.prepare_rootfs(InitSpec(id="c", rootfs=str(rootfs), args=("x",), mounts=mounts,
                                   privileged=True), sys)
    return sys, os.path.realpath(rootfs)


def test_root_is_rslave_and_the_old_root_is_detached_as_a_slave(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys, rootfs = _prepare(tmp_path, monkeypatch, ())
    assert sys.calls == [
        ("mount", ("", "/", "", L.MS_SLAVE | L.MS_REC, "")),
        ("mount", (rootfs, rootfs, "", L.MS_BIND | L.MS_REC, "")),
        ("pivot_root", (".", ".")),
        # a slave first: the lazy unmount of the old root must never reach the host
        ("mount", ("", ".", "", L.MS_SLAVE | L.MS_REC, "")),
        ("umount2", (".", L.MNT_DETACH)),
    ]


def test_bidirectional_volume_keeps_the_root_shared(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "vol"
    src.mkdir()
    sys, rootfs = _prepare(tmp_path, monkeypatch,
                           (MountPoint("/vol", "bind", str(src), ("rbind", "rshared")),))
    assert sys.calls[0] == ("mount", ("", "/", "", L.MS_SHARED | L.MS_REC, ""))
    bind = sys.calls.index(("mount", (rootfs, rootfs, "", L.MS_BIND | L.MS_REC, "")))
    # whatever was made private before the rootfs bind is the mount holding the rootfs
    for name, args in sys.calls[1:bind]:
        assert name == "mount" and args[3] == L.MS_PRIVATE and rootfs.startswith(args[1])
    assert ("mount", ("", str(Path(rootfs) / "vol"), "", L.MS_SHARED | L.MS_REC, "")) \
        in sys.calls


MOUNTINFO = """\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw
23 22 0:22 / /proc rw shared:12 - proc proc rw
30 22 0:30 / /var/lib/x rw master:3 - ext4 /dev/sda rw
31 30 0:31 / /var/lib/x/a\\040b rw - tmpfs tmpfs rw
32 22 0:32 / /var/lib/x rw shared:7 - tmpfs tmpfs rw
"""


@pytest.mark.parametrize(("path", "expected"), [
    ("/etc/passwd", ("/", True)),
    ("/proc", ("/proc", True)),
    ("/procx", ("/", True)),
    ("/var/lib/x/a b/c", ("/var/lib/x/a b", False)),
    ("/var/lib/x/other", ("/var/lib/x", True)),  # the later mount on the point is on top
])
def test_mount_point_of(path: str, expected: tuple[str, bool]) -> None:
    assert mountopts.mount_point_of(path, MOUNTINFO) == expected


def test_root_propagation() -> None:
    assert mountopts.root_propagation([]) == "rslave"
    assert mountopts.root_propagation([("rbind", "rslave"), ("rbind", "rprivate")]) == "rslave"
    assert mountopts.root_propagation([("rbind",), ("rbind", "rshared")]) == "rshared"


def test_rro_bind_is_made_recursively_readonly_after_mounting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rootfs = tmp_path / "root"
    rootfs.mkdir()
    made: list[str] = []
    monkeypatch.setattr(nsinit.mountattr, "make_recursively_readonly", made.append)
    sys = FakeSyscalls()
    nsinit.mount_one(str(rootfs), MountPoint("/v", "bind", str(tmp_path),
                                             ("rbind", "rprivate", "ro", "rro")), sys=sys)
    target = str(rootfs / "v")
    assert made == [target]
    assert sys.calls[1] == ("mount", ("", target, "", L.MS_REMOUNT | L.MS_BIND | L.MS_RDONLY,
                                      ""))  # "rro" is not passed to mount(2) as data
    nsinit.mount_one(str(rootfs), MountPoint("/w", "bind", str(tmp_path), ("rbind", "ro")),
                     sys=sys)
    assert made == [target]
