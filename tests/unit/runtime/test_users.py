from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.execdriver.spec import User
from engine.runtime.users import home_of, resolve


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\napp:x:1001:\nwheel:x:10:app,root\n")
    return str(tmp_path)


def test_by_name_with_groups(rootfs: str) -> None:
    assert resolve(rootfs, "app") == User(uid=1000, gid=1001, additional_gids=(1001, 10))
    assert resolve(rootfs, "app", supplemental=(55,)).additional_gids == (1001, 10, 55)


def test_numeric_and_group_forms(rootfs: str) -> None:
    assert resolve(rootfs, "4242") == User(uid=4242, gid=0, additional_gids=(0,))
    assert resolve(rootfs, "1000").gid == 1001
    assert resolve(rootfs, "app:wheel").gid == 10
    assert resolve(rootfs, "app:77").gid == 77
    assert resolve(rootfs, "", group=5).gid == 5
    assert resolve(rootfs, "").uid == 0


def test_unknown_user_or_group(rootfs: str) -> None:
    with pytest.raises(InvalidArgument, match="ghost"):
        resolve(rootfs, "ghost")
    with pytest.raises(InvalidArgument, match="nogroup"):
        resolve(rootfs, "app:nogroup")


def test_passwd_symlink_out_of_rootfs_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    os.symlink("/etc/passwd", tmp_path / "etc" / "passwd")
    with pytest.raises(InvalidArgument):
        resolve(str(tmp_path), "root")  # the host's root entry is not the image's


def test_home(rootfs: str) -> None:
    assert home_of(rootfs, 1000) == "/home/app"
    assert home_of(rootfs, 5) == "/"


def test_strict_policy_leaves_out_the_images_group_memberships(rootfs: str) -> None:
    strict = resolve(rootfs, "app", supplemental=(55,), merge_image_groups=False)
    assert strict == User(uid=1000, gid=1001, additional_gids=(1001, 55))
    assert resolve(rootfs, "1000", merge_image_groups=False).additional_gids == (1001,)
