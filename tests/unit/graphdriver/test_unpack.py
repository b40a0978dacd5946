from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from engine.errors import InvalidArgument, ResourceExhausted
from engine.graph.errors import TruncatedContent
from engine.graph.layerstream import LayerReader
from engine.graphdriver.unpack import Limits, Whiteouts, apply_layer
from tests.unit.graphdriver.tarmaker import Tar


def apply(root: Path, data: bytes, mode: Whiteouts = Whiteouts.DELETE, **kw: object) -> None:
    apply_layer(str(root), io.BytesIO(data), whiteouts=mode, **kw)  # type: ignore[arg-type]


def test_files_dirs_links_modes_and_times(tmp_path: Path) -> None:
    long = "d/" + "n" * 150
    apply(tmp_path, Tar().dir("d", mode=0o750).file("d/f", b"data", mode=0o4755)
          .symlink("d/s", "f").hardlink("d/h", "d/f").file(long, b"long").file("nodir/x", b"1")
          .bytes())
    f = tmp_path / "d" / "f"
    assert f.read_bytes() == b"data"
    assert stat.S_IMODE(f.stat().st_mode) == 0o4755  # setuid kept
    assert os.readlink(tmp_path / "d" / "s") == "f"
    assert (tmp_path / "d" / "h").stat().st_ino == f.stat().st_ino
    assert (tmp_path / long).read_bytes() == b"long"
    assert (tmp_path / "nodir" / "x").read_bytes() == b"1"
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o750
    assert f.stat().st_mtime_ns == 1_600_000_000 * 10**9
    assert (tmp_path / "d").stat().st_mtime_ns == 1_600_000_000 * 10**9


def test_gnu_long_names(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        ti = tarfile.TarInfo("x/" + "y" * 200)
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"abc"))
        ln = tarfile.TarInfo("l")
        ln.type, ln.linkname = tarfile.SYMTYPE, "t" * 300
        t.addfile(ln)
    apply(tmp_path, buf.getvalue())
    assert (tmp_path / "x" / ("y" * 200)).read_bytes() == b"abc"
    assert os.readlink(tmp_path / "l") == "t" * 300


def test_delete_whiteouts_and_opaque(tmp_path: Path) -> None:
    apply(tmp_path, Tar().file("a/1", b"1").file("a/2", b"2").file("b/keep", b"k")
          .file("gone", b"g").bytes())
    apply(tmp_path, Tar().file(".wh.gone", b"").file("a/new", b"n").file("a/.wh..wh..opq", b"")
          .file("b/.wh.missing", b"").file(".wh..wh.plnk", b"").bytes())
    assert not (tmp_path / "gone").exists()
    assert sorted(os.listdir(tmp_path / "a")) == ["new"]
    assert sorted(os.listdir(tmp_path / "b")) == ["keep"]


def test_replacing_kinds(tmp_path: Path) -> None:
    apply(tmp_path, Tar().dir("x").file("x/y", b"1").file("f", b"1").symlink("s", "f").bytes())
    apply(tmp_path, Tar().file("x", b"now a file").dir("f").file("s", b"plain").bytes())
    assert (tmp_path / "x").read_bytes() == b"now a file"
    assert (tmp_path / "f").is_dir()
    assert not (tmp_path / "s").is_symlink() and (tmp_path / "s").read_bytes() == b"plain"


def test_entry_and_size_caps(tmp_path: Path) -> None:
    tar = Tar()
    for i in range(11):
        tar.file(f"f{i}", b"12345")
    data = tar.bytes()
    with pytest.raises(ResourceExhausted, match="entries"):
        apply(tmp_path / "", data, limits=Limits(max_entries=10))
    with pytest.raises(ResourceExhausted, match="bytes"):
        apply(tmp_path, data, limits=Limits(max_bytes=50))


def test_truncated_and_corrupt_tar(tmp_path: Path) -> None:
    data = Tar().file("big", b"z" * 5000).bytes()
    with pytest.raises(TruncatedContent):
        apply(tmp_path, data[:3000])
    bad = bytearray(data)
    bad[10] ^= 0xFF
    with pytest.raises(InvalidArgument, match="checksum"):
        apply(tmp_path, bytes(bad))


def test_gzip_bomb_refused_by_the_reader(tmp_path: Path) -> None:
    zeros = Tar().file("zeros", b"\0" * (20 << 20)).bytes()
    bomb = gzip.compress(zeros, 9)
    assert len(bomb) < 100_000
    reader = LayerReader(io.BytesIO(bomb), max_bytes=8 << 20)
    with pytest.raises(ResourceExhausted, match="bomb"):
        apply_layer(str(tmp_path), reader, whiteouts=Whiteouts.DELETE)


@pytest.mark.parametrize("kind", ["gzip", "zstd", "none", "gzip-multi"])
def test_layer_reader_formats_and_diff_id(kind: str) -> None:
    tar = Tar().file("a", os.urandom(3 << 20)).bytes()
    blob = {"gzip": lambda: gzip.compress(tar, 1),
            "zstd": lambda: zstandard.ZstdCompressor().compress(tar),
            "none": lambda: tar,
            "gzip-multi": lambda: gzip.compress(tar[:1000]) + gzip.compress(tar[1000:])}[kind]()
    r = LayerReader(io.BytesIO(blob))
    out = b"".join(iter(lambda: r.read(1 << 16), b""))
    assert out == tar
    assert r.diff_id() == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_zero_byte_layer_and_corrupt_gzip() -> None:
    with pytest.raises(InvalidArgument, match="empty"):
        LayerReader(io.BytesIO(b""))
    r = LayerReader(io.BytesIO(gzip.compress(b"x" * 100000)[:-30]))
    with pytest.raises(InvalidArgument, match="gzip"):
        r.drain()


@pytest.mark.integration
def test_overlay_whiteouts_devices_and_ownership(tmp_path: Path) -> None:
    apply(tmp_path, Tar().file(".wh.gone", b"").file("d/.wh..wh..opq", b"")
          .symlink("s", "/etc/shadow", uid=1234).file("o", b"x", uid=4321)
          .device("null", tarfile.CHRTYPE, 1, 3).device("fifo", tarfile.FIFOTYPE, 0, 0)
          .bytes(), Whiteouts.OVERLAY)
    wh = (tmp_path / "gone").lstat()
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == os.makedev(0, 0)
    assert os.getxattr(tmp_path / "d", "trusted.overlay.opaque") == b"y"
    assert (tmp_path / "s").lstat().st_uid == 1234
    assert (tmp_path / "o").stat().st_uid == 4321
    dev = (tmp_path / "null").lstat()
    assert stat.S_ISCHR(dev.st_mode) and dev.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO((tmp_path / "fifo").lstat().st_mode)


def raw_entry(name: bytes, typeflag: bytes, size: int = 0, data: bytes = b"") -> bytes:
    """One hand-made ustar header (+ data), for entries tarfile refuses to write."""
    hdr = bytearray(512)
    hdr[0:len(name)] = name
    hdr[100:108] = b"0000644\0"
    hdr[108:116] = hdr[116:124] = b"0000000\0"
    hdr[124:136] = f"{size:011o}\0".encode()
    hdr[136:148] = b"00000000000\0"
    hdr[156:157] = typeflag
    hdr[257:263] = b"ustar\0"
    hdr[148:156] = b" " * 8
    hdr[148:156] = f"{sum(hdr):06o}\0 ".encode()
    return bytes(hdr) + data + b"\0" * (-len(data) % 512)


def test_hostile_headers(tmp_path: Path) -> None:
    end = b"\0" * 1024
    with pytest.raises(InvalidArgument, match="unsupported entry type"):
        apply(tmp_path, raw_entry(b"sparse", b"S") + end)
    with pytest.raises(InvalidArgument, match="too large"):
        apply(tmp_path, raw_entry(b"././@LongLink", b"L", size=2 << 20) + end)
    record = b" path=a\0b/../../etc/passwd\n"
    pax = str(len(record) + 2).encode() + record
    with pytest.raises(InvalidArgument, match="NUL"):
        apply(tmp_path, raw_entry(b"p", b"x", len(pax), pax) + raw_entry(b"f", b"0") + end)
    bad_pax = b"99 path=x\n"
    with pytest.raises(InvalidArgument, match="pax"):
        apply(tmp_path, raw_entry(b"p", b"x", len(bad_pax), bad_pax) + end)


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        apply(tmp_path, Tar().symlink("a", "b").symlink("b", "a").file("a/x", b"1").bytes())


def test_whiteout_then_recreate_and_hardlink_into_dir(tmp_path: Path) -> None:
    apply(tmp_path, Tar().file("d/old", b"o").bytes())
    apply(tmp_path, Tar().file(".wh.d", b"").dir("d").file("d/new", b"n")
          .hardlink("d/link", "d/new").bytes())
    assert sorted(os.listdir(tmp_path / "d")) == ["link", "new"]
    assert (tmp_path / "d/link").stat().st_nlink == 2


def test_many_directories_and_hardlinks_across_them(tmp_path: Path) -> None:
    tar = Tar()
    for i in range(600):  # more directories than the fd cache holds
        tar.file(f"d{i}/f", str(i).encode())
        tar.hardlink(f"d{i}/h", f"d{(i * 7) % (i + 1)}/f")
    apply(tmp_path, tar.bytes())
    for i in range(600):
        assert (tmp_path / f"d{i}/h").read_bytes() == str((i * 7) % (i + 1)).encode()
