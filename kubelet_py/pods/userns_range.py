"""The host ID range the kubelet hands out to pods with `spec.hostUsers: false`.

As upstream: the subordinate IDs of the `kubelet` user. When no such user exists, the whole
ID space above the first block is the kubelet's (with the default `idsPerPod` of 65536:
first ID 65536, length 2^32 - 65536; with a larger `idsPerPod`, the first block is that
large, so that blocks stay aligned).
When it exists, it must have exactly one range in /etc/subuid and the same one in
/etc/subgid (upstream asks `getsubids`, which reads these files; we read them directly, so
a missing `getsubids` binary changes nothing here).
"""
from __future__ import annotations

import dataclasses
import pwd
from collections.abc import Callable
from pathlib import Path

from kubelet_py.errors import KubeletError

KUBELET_USER = "kubelet"
UNIT = 1 << 16
"""User namespaces are handed out in multiples of this many IDs."""
IDS_PER_POD = UNIT
"""Default of KubeletConfiguration `userNamespaces.idsPerPod`."""
MAX_IDS_PER_POD = (1 << 32) - 1
DEFAULT_FIRST_ID = IDS_PER_POD
DEFAULT_LENGTH = (1 << 32) - DEFAULT_FIRST_ID
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")


class UsernsError(KubeletError):
    """A pod's user namespace cannot be set up (the message is the event's)."""


@dataclasses.dataclass(frozen=True)
class IdRange:
    first: int
    length: int


def validate_ids_per_pod(value: int) -> int:
    """`userNamespaces.idsPerPod` as upstream validates it; ValueError with its message."""
    if value < UNIT:
        raise ValueError(f"invalid configuration: userNamespaces.idsPerPod must not be less "
                         f"than {UNIT}")
    if value % UNIT:
        raise ValueError(f"invalid configuration: userNamespaces.idsPerPod must be a multiple "
                         f"of {UNIT}")
    if value > MAX_IDS_PER_POD:
        raise ValueError(f"invalid configuration: userNamespaces.idsPerPod must not be more "
                         f"than {MAX_IDS_PER_POD}")
    return value


def lookup_uid(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _ranges(path: Path, name: str, uid: int) -> list[IdRange]:
    """The `name:first:count` entries of a subid file for the user (by name or by uid)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UsernsError(f"kubelet mappings: read {path}: {exc.strerror}") from exc
    found = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        owner, _, rest = line.partition(":")
        if owner not in (name, str(uid)):
            continue
        first, _, count = rest.partition(":")
        try:
            found.append(IdRange(int(first), int(count)))
        except ValueError:
            raise UsernsError(f"kubelet mappings: {path}:{lineno}: {line!r} is not "
                              "name:first:count") from None
    return found


def kubelet_range(*, user: str = KUBELET_USER, subuid: Path = SUBUID, subgid: Path = SUBGID,
                  lookup: Callable[[str], int | None] = lookup_uid,
                  ids_per_pod: int = IDS_PER_POD) -> IdRange:
    """The kubelet user's subordinate IDs; without that user, every ID from the first
    `ids_per_pod` block on (block 0, which holds the host's root, is never handed out)."""
    uid = lookup(user)
    if uid is None:
        return IdRange(ids_per_pod, (1 << 32) - ids_per_pod)
    uids, gids = _ranges(subuid, user, uid), _ranges(subgid, user, uid)
    if len(uids) != 1:
        raise UsernsError(f"kubelet mappings: user {user!r} needs exactly one range in "
                          f"{subuid}, found {len(uids)}")
    if uids != gids:
        raise UsernsError(f"kubelet mappings: mismatched subuids and subgids for user "
                          f"{user!r} ({subuid}: {uids}, {subgid}: {gids})")
    return uids[0]
