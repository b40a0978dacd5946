from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import InvalidArgument, NotFound
from engine.graph import digest as dg
from engine.graph.content import ContentStore
from engine.graph.errors import DigestMismatch, SizeMismatch, TruncatedContent
from engine.graph.model import parse_config


def test_put_read_delete(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    d = cs.put(b"hello")
    assert d == dg.of_bytes(b"hello") and cs.read(d) == b"hello" and cs.size(d) == 5
    assert list(cs.digests()) == [d]
    cs.delete(d)
    with pytest.raises(NotFound):
        cs.read(d)


@pytest.mark.parametrize(("data", "size", "err"), [
    (b"hellx", 5, DigestMismatch), (b"hello!", 5, SizeMismatch), (b"hell", 5, TruncatedContent)])
def test_writer_verifies_before_publishing(tmp_path: Path, data: bytes, size: int,
                                           err: type[Exception]) -> None:
    cs = ContentStore(tmp_path)
    want = dg.of_bytes(b"hello")
    with pytest.raises(err), cs.writer(want, size) as w:
        w.write(data)
        w.commit()
    assert not cs.exists(want) and not list(cs.ingest_dir.iterdir())


def test_clean_ingest_and_bad_digest(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    w = cs.writer(dg.of_bytes(b"x"), 1)
    w.write(b"x")
    assert cs.clean_ingest() == 1
    with pytest.raises(InvalidArgument):
        cs.writer("md5:abc", 1)


def test_chain_ids() -> None:
    a, b = dg.of_bytes(b"a"), dg.of_bytes(b"b")
    assert dg.chain_ids([a, b]) == [a, dg.of_bytes(f"{a} {b}".encode())]


def test_config_parsing_and_cri_user() -> None:
    d = dg.of_bytes(b"x")
    cfg = parse_config(json.dumps({"os": "linux", "architecture": "amd64", "config": {
        "User": "1000:50", "Env": ["A=1"], "Entrypoint": ["/e"], "Cmd": ["c"],
        "WorkingDir": "/w", "Labels": {"b": "2", "a": "1"}, "ExposedPorts": {"80/tcp": {}},
        "Volumes": {"/data": {}}, "StopSignal": "SIGQUIT"},
        "rootfs": {"type": "layers", "diff_ids": [d]}}).encode())
    assert cfg.cri_user() == (1000, "") and cfg.labels == (("a", "1"), ("b", "2"))
    assert cfg.exposed_ports == ("80/tcp",) and cfg.volumes == ("/data",)
    assert cfg.diff_ids == (d,) and cfg.stop_signal == "SIGQUIT"
    with pytest.raises(InvalidArgument, match="rootfs"):
        parse_config(b'{"rootfs": {"type": "other"}}')
    with pytest.raises(InvalidArgument, match="Env"):
        parse_config(b'{"rootfs": {"type": "layers", "diff_ids": []}, "config": {"Env": "x"}}')
