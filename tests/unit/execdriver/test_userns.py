"""Pod user namespaces, the pure parts: mapping validation and text, the OCI config runc and
crun get, the device binds the native init makes instead of mknod."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.execdriver import nsinit, userns
from engine.execdriver.oci import config
from engine.execdriver.spec import Device, IDMapping, InitSpec, Namespace
from engine.sys import linux as L
from engine.sys.fake import FakeSyscalls

MAPS = (IDMapping(container_id=0, host_id=1000, size=100000),)


def test_valid_maps_pass() -> None:
    userns.validate(MAPS, (IDMapping(0, 5000, 10),))


@pytest.mark.parametrize("uids, gids, needle", [
    ((), MAPS, "exactly one uid mapping is supported, got 0"),
    (MAPS * 2, MAPS, "exactly one uid mapping is supported, got 2"),
    (MAPS, MAPS * 2, "exactly one gid mapping"),
    ((IDMapping(1, 1000, 100000),), MAPS, "container id 0 is not mapped"),
    (MAPS, (IDMapping(0, 1000, 0),), "gid mapping length must be at least 1"),
    ((IDMapping(0, 2**32 - 2, 2),), MAPS, "32-bit"),
])
def test_bad_maps_are_refused(uids: tuple[IDMapping, ...], gids: tuple[IDMapping, ...],
                              needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        userns.validate(uids, gids)


def test_map_text_and_lookups() -> None:
    maps = (IDMapping(0, 1000, 10), IDMapping(10, 5000, 5))
    assert userns.map_text(maps) == "0 1000 10\n10 5000 5\n"
    assert [userns.to_host(maps, i) for i in (0, 9, 10, 14, 15)] == [1000, 1009, 5000, 5004,
                                                                    None]


def test_mappings_from_a_monitor_request() -> None:
    assert userns.mappings(None) == () and userns.mappings([]) == ()
    assert userns.mappings([{"container_id": 0, "host_id": 1000, "size": 100000}]) == MAPS
    for bad in ([{"container_id": 0}], "0 1000 1", [{"container_id": "x", "host_id": 1,
                                                     "size": 1}]):
        with pytest.raises(InvalidArgument, match="ID mapping"):
            userns.mappings(bad)


def _spec(**kw: object) -> InitSpec:
    return InitSpec(id="c", rootfs="/r", args=("true",), **kw)  # type: ignore[arg-type]


def test_oci_config_joins_the_pod_user_namespace_with_its_maps() -> None:
    spec = _spec(namespaces=(Namespace("user", "/sb/ns/user"), Namespace("mnt"),
                             Namespace("net", "/sb/ns/net")),
                 uid_mappings=MAPS, gid_mappings=(IDMapping(0, 2000, 50),))
    linux = config(spec)["linux"]
    assert linux["namespaces"][0] == {"type": "user", "path": "/sb/ns/user"}
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 100000}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": 2000, "size": 50}]
    assert not any("idmap" in m["options"] for m in config(spec)["mounts"])


def test_oci_config_without_user_namespace_has_no_maps() -> None:
    linux = config(_spec(namespaces=(Namespace("mnt"),)))["linux"]
    assert "uidMappings" not in linux and "gidMappings" not in linux


def test_devices_are_bind_mounted_in_a_user_namespace(tmp_path: Path) -> None:
    rootfs = tmp_path / "root"
    (rootfs / "dev").mkdir(parents=True)
    sys = FakeSyscalls()
    nsinit.bind_device(str(rootfs), Device("/dev/null", "c", 1, 3), sys=sys)
    target = str(rootfs / "dev" / "null")
    assert sys.calls == [("mount", ("/dev/null", target, "", L.MS_BIND, ""))]
    assert (rootfs / "dev" / "null").is_file()  # a plain file to mount on, no mknod
