"""JSON <-> frozen dataclasses (nested dataclasses, tuples, optionals, str dicts)."""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from engine.errors import InvalidArgument

T = TypeVar("T")


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


def from_jsonable(cls: type[T], data: Any) -> T:
    return typing.cast(T, _decode(cls, data))


def _decode(tp: Any, data: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if data is None else _decode(args[0], data)
    if origin is tuple:
        return tuple(_decode(typing.get_args(tp)[0], v) for v in data)
    if origin is dict:
        _, vt = typing.get_args(tp)
        return {str(k): _decode(vt, v) for k, v in data.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise InvalidArgument(f"expected an object for {tp.__name__}, got {data!r}")
        hints = typing.get_type_hints(tp)
        kwargs = {f.name: _decode(hints[f.name], data[f.name])
                  for f in dataclasses.fields(tp) if f.name in data}
        return tp(**kwargs)
    return data


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), sort_keys=True)


def loads(cls: type[T], text: str) -> T:
    return from_jsonable(cls, json.loads(text))


def write_atomic(path: Path, text: str) -> None:
    """Write-to-temp, fsync, rename: readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
