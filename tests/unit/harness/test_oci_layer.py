"""The deterministic layer builder: tar shape, whiteouts, compression and digests."""
from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest
import zstandard

from tests.harness.oci_layer import (
    FIXED_MTIME,
    Compression,
    build_layer,
    build_tar,
    directory,
    file,
    hardlink,
    opaque,
    symlink,
    whiteout,
)


def _members(tar: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        return archive.getmembers()


ENTRIES = [
    file("z/last", b"z"), directory("z"), directory("a"), file("a/b", b"bee", mode=0o600),
    hardlink("a/link", "a/b"), symlink("a/sym", "/a/b"), whiteout("a/gone"), opaque("z"),
]


def test_same_entries_give_identical_bytes_whatever_their_order() -> None:
    one = build_layer(ENTRIES)
    two = build_layer(list(reversed(ENTRIES)))
    assert one.blob == two.blob
    assert one.digest == two.digest and one.diff_id == two.diff_id


def test_members_are_sorted_parents_first_hardlinks_after_targets_and_fixed_metadata() -> None:
    members = _members(build_tar(ENTRIES))
    names = [m.name for m in members]
    assert names == ["a", "a/.wh.gone", "a/b", "a/sym", "z", "z/.wh..wh..opq", "z/last",
                     "a/link"]
    assert {m.mtime for m in members} == {FIXED_MTIME}
    assert {(m.uname, m.gname) for m in members} == {("", "")}
    by_name = {m.name: m for m in members}
    assert by_name["a/link"].islnk() and by_name["a/link"].linkname == "a/b"
    assert by_name["a/sym"].issym() and by_name["a/sym"].linkname == "/a/b"
    assert by_name["a"].isdir() and by_name["a/b"].mode == 0o600


def test_whiteout_and_opaque_markers_are_empty_regular_files() -> None:
    by_name = {m.name: m for m in _members(build_tar(ENTRIES))}
    for name in ("a/.wh.gone", "z/.wh..wh..opq"):
        assert by_name[name].isreg() and by_name[name].size == 0


@pytest.mark.parametrize("compression", list(Compression))
def test_digest_is_of_the_blob_and_diff_id_of_the_tar(compression: Compression) -> None:
    layer = build_layer(ENTRIES, compression=compression)
    tar = build_tar(ENTRIES)
    if compression is Compression.GZIP:
        assert gzip.decompress(layer.blob) == tar
        assert layer.blob[4:8] == b"\0\0\0\0"  # gzip header mtime is zero
    elif compression is Compression.ZSTD:
        assert zstandard.ZstdDecompressor().decompress(layer.blob) == tar
    else:
        assert layer.blob == tar
    assert layer.digest == "sha256:" + hashlib.sha256(layer.blob).hexdigest()
    assert layer.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert layer.tar_size == len(tar) and layer.size == len(layer.blob)


@pytest.mark.parametrize("bad", ["/abs", "a/../b", "../up", "a//b", "a/"])
def test_paths_must_be_relative_and_normalised(bad: str) -> None:
    with pytest.raises(ValueError, match="relative and normalised"):
        file(bad, b"")


def test_duplicate_paths_and_dangling_hardlinks_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        build_tar([file("x", b"1"), file("x", b"2")])
    with pytest.raises(ValueError, match="must come earlier"):
        build_tar([hardlink("y", "missing")])
