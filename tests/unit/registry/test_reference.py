from __future__ import annotations

import pytest

from engine.errors import InvalidArgument
from engine.registry.reference import parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(("text", "want"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
    ("someone/app", "docker.io/someone/app:latest"),
    ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
    ("localhost/app", "localhost/app:latest"),
    ("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000/a/b/c:v1"),
    ("[::1]:5000/app:x", "[::1]:5000/app:x"),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
    (f"host:5000/app:v1@{D}", f"host:5000/app:v1@{D}"),
    ("docker.io/a-b__c.d/e_f-g:Tag_1.0", "docker.io/a-b__c.d/e_f-g:Tag_1.0"),
])
def test_normalises(text: str, want: str) -> None:
    assert str(parse(text)) == want


def test_fields() -> None:
    r = parse(f"127.0.0.1:5000/team/app:v2@{D}")
    assert (r.domain, r.path, r.tag, r.digest) == ("127.0.0.1:5000", "team/app", "v2", D)
    assert r.object == D
    assert parse("busybox").object == "latest"


@pytest.mark.parametrize("bad", [
    "", " busybox", "Busybox", "docker.io/Library/busybox", "busybox:", "busybox:-x",
    "busybox@sha256:abc", "busybox@md5:" + "a" * 32, "a//b", "/busybox", "busybox/",
    "host:5000/", "a" * 300, "a_b.c/d", "bad_-name", "busy box", "busybox:" + "t" * 129,
])
def test_unparsable_is_invalid_argument(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        parse(bad)
