"""uid/gid/supplementary groups from the container's own /etc/passwd and /etc/group."""
from __future__ import annotations

from engine.errors import InvalidArgument
from engine.execdriver.mountopts import secure_target
from engine.execdriver.spec import User


def _read(rootfs: str, path: str) -> list[list[str]]:
    try:
        with open(secure_target(rootfs, path)) as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip()
                    and not line.startswith("#")]
    except (FileNotFoundError, InvalidArgument):
        return []

def resolve(rootfs: str, user: str, *, group: int | None = None,
            supplemental: tuple[int, ...] = (), merge_image_groups: bool = True) -> User:
    """`user` is "name", "uid", "name:group" or "uid:gid" (image config style). The groups
    /etc/group lists the user in are added unless `merge_image_groups` is False."""
    name, _, grp = user.partition(":")
    passwd = [e for e in _read(rootfs, "/etc/passwd") if len(e) >= 4]
    groups = [e for e in _read(rootfs, "/etc/group") if len(e) >= 3]
    if not name or name.isdigit():
        uid = int(name or 0)
        entry = next((e for e in passwd if e[2] == str(uid)), None)
        gid = int(entry[3]) if entry else 0
    else:
        entry = next((e for e in passwd if e[0] == name), None)
        if entry is None:
            raise InvalidArgument(f"user {name!r} not found in the image's /etc/passwd")
        uid, gid = int(entry[2]), int(entry[3])
    if grp:
        if grp.isdigit():
            gid = int(grp)
        else:
            g = next((e for e in groups if e[0] == grp), None)
            if g is None:
                raise InvalidArgument(f"group {grp!r} not found in the image's /etc/group")
            gid = int(g[2])
    if group is not None:
        gid = group
    username = entry[0] if entry else ""
    extra = [int(g[2]) for g in groups if merge_image_groups
             and len(g) >= 4 and username and username in g[3].split(",")]
    # like containerd: the primary group is also a supplementary group
    additional = tuple(dict.fromkeys((gid, *extra, *supplemental)))
    return User(uid=uid, gid=gid, additional_gids=additional)

def home_of(rootfs: str, uid: int) -> str:
    entry = next((e for e in _read(rootfs, "/etc/passwd") if len(e) >= 6 and e[2] == str(uid)),
                 None)
    return entry[5] if entry and entry[5] else "/"

