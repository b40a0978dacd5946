from __future__ import annotations

import json

import pytest

from engine.errors import InvalidArgument
from engine.registry import manifest as mf
from engine.registry.errors import PlatformNotFound

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")
CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": 10}
LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D2, "size": 5}


def doc(**kw: object) -> bytes:
    return json.dumps({"schemaVersion": 2, **kw}).encode()


def test_oci_manifest() -> None:
    m = mf.parse(doc(mediaType=mf.OCI_MANIFEST, config=CONFIG, layers=[LAYER]), mf.OCI_MANIFEST)
    assert isinstance(m, mf.Manifest)
    assert m.config.digest == D1 and [x.digest for x in m.layers] == [D2]


def test_docker_manifest_from_field_only() -> None:
    config = {**CONFIG, "mediaType": "application/vnd.docker.container.image.v1+json"}
    layer = {**LAYER, "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}
    m = mf.parse(doc(mediaType=mf.DOCKER_MANIFEST, config=config, layers=[layer]), None)
    assert isinstance(m, mf.Manifest) and m.media_type == mf.DOCKER_MANIFEST


@pytest.mark.parametrize(("body", "ctype", "why"), [
    (doc(mediaType=mf.OCI_MANIFEST, config=CONFIG, layers=[LAYER]), mf.OCI_INDEX, "served as"),
    (doc(config=CONFIG, layers=[LAYER], manifests=[]), None, "ambiguous"),
    (json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(), None, "schemaVersion"),
    (doc(mediaType=mf.OCI_MANIFEST, config={**CONFIG, "mediaType": "application/x-helm"},
         layers=[]), None, "not a container image"),
    (doc(mediaType=mf.OCI_MANIFEST, config=CONFIG, layers=[{**LAYER, "mediaType": "x/y"}]),
     None, "layer media type"),
    (doc(mediaType=mf.OCI_MANIFEST, config=CONFIG, layers=[{**LAYER, "size": -1}]), None,
     "size"),
    (doc(mediaType=mf.OCI_MANIFEST, config={**CONFIG, "digest": "sha256:xyz"}, layers=[]),
     None, "digest"),
    (b"not json", None, "JSON"),
    (doc(mediaType="application/vnd.docker.distribution.manifest.v1+json"), None, "media"),
])
def test_rejects_ambiguous_and_unsupported(body: bytes, ctype: str | None, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        mf.parse(body, ctype)


def entry(digest: str, arch: str, variant: str = "") -> dict[str, object]:
    plat = {"os": "linux", "architecture": arch}
    if variant:
        plat["variant"] = variant
    return {"mediaType": mf.OCI_MANIFEST, "digest": digest, "size": 1, "platform": plat}


def test_platform_selection_variant_aware() -> None:
    idx = mf.parse(doc(mediaType=mf.OCI_INDEX, manifests=[
        entry(D1, "arm", "v6"), entry(D2, "arm", "v7"), entry(D3, "amd64")]), mf.OCI_INDEX)
    assert isinstance(idx, mf.Index)
    assert mf.select(idx, mf.Platform("linux", "arm", "v7")).digest == D2
    assert mf.select(idx, mf.Platform("linux", "amd64")).digest == D3
    idx2 = mf.parse(doc(mediaType=mf.DOCKER_LIST, manifests=[entry(D1, "arm64"),
                        entry(D2, "arm64", "v8")]), None)
    assert isinstance(idx2, mf.Index)
    assert mf.select(idx2, mf.Platform("linux", "arm64", "v8")).digest == D2


def test_index_without_our_platform() -> None:
    idx = mf.parse(doc(mediaType=mf.OCI_INDEX, manifests=[entry(D1, "s390x"),
                                                           entry(D2, "arm", "v7")]), None)
    assert isinstance(idx, mf.Index)
    with pytest.raises(PlatformNotFound, match=r"linux/amd64.*s390x"):
        mf.select(idx, mf.Platform("linux", "amd64"))
    with pytest.raises(PlatformNotFound):
        mf.select(idx, mf.Platform("linux", "arm", "v6"))
