"""Request checks and list helpers shared by the servicer families.

Each check raises `engine.errors.InvalidArgument` with a message naming the field, which
the dispatcher turns into INVALID_ARGUMENT.
"""
from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

from google.protobuf import descriptor as pb_descriptor

from cri.api import runtime_pb2 as pb
from engine.errors import InvalidArgument

T = TypeVar("T")

MAX_ID_LENGTH = 256
MAX_COMMAND_BYTES = 1 << 20  # generous next to Linux's ARG_MAX of 2 MiB for argv+envp
STREAM_BATCH = 100  # items per message of the Stream* list RPCs


def require(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is required")
    if len(value) > MAX_ID_LENGTH and field.endswith("id"):
        raise InvalidArgument(f"{field} is longer than {MAX_ID_LENGTH} characters")
    return value


def no_dotdot(path: str, field: str) -> str:
    """Reject any `..` component: a path that could climb out of where it is anchored."""
    if "\x00" in path:
        raise InvalidArgument(f"{field} {path!r} contains a NUL byte")
    if ".." in path.split("/"):
        raise InvalidArgument(f"{field} {path!r} may not contain '..'")
    return path


def absolute(path: str, field: str) -> str:
    no_dotdot(path, field)
    if not posixpath.isabs(path):
        raise InvalidArgument(f"{field} {path!r} must be an absolute path")
    return path


def relative(path: str, field: str) -> str:
    no_dotdot(path, field)
    if posixpath.isabs(path):
        raise InvalidArgument(f"{field} {path!r} must be relative")
    return path


def non_negative(value: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument(f"{field} must not be negative (got {value})")
    return value


def known_enum(value: int, enum: pb_descriptor.EnumDescriptor, field: str) -> int:
    if value not in enum.values_by_number:
        raise InvalidArgument(f"{field}: {value} is not a known {enum.name} value")
    return value


def token(value: str, field: str) -> str:
    """One word of a file line the engine writes (resolv.conf, hosts): no whitespace, no
    control character (a newline would add a line of the client's choosing)."""
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidArgument(f"{field} {value!r} must be one non-empty word of printable "
                              "characters")
    return value


def namespace_modes(ns: pb.NamespaceOption) -> None:
    """Every NamespaceMode of a NamespaceOption, the user namespace's included."""
    mode = pb.NamespaceMode.DESCRIPTOR
    for field in ("network", "pid", "ipc"):
        known_enum(getattr(ns, field), mode, f"namespace_options.{field}")
    known_enum(ns.userns_options.mode, mode, "namespace_options.userns_options.mode")


def command_size(argv: Sequence[str], field: str) -> None:
    size = sum(len(a.encode()) + 1 for a in argv)
    if size > MAX_COMMAND_BYTES:
        raise InvalidArgument(f"{field} is {size} bytes, more than the {MAX_COMMAND_BYTES} "
                              "a process can be given")


def labels_match(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def id_matches(item_id: str, wanted: str) -> bool:
    """Filters take a full ID or a prefix of one, as crictl's short IDs are."""
    return not wanted or item_id.startswith(wanted)


def batches(items: Iterable[T], size: int = STREAM_BATCH) -> Iterator[list[T]]:
    """Non-empty batches; no batch at all for no items."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
