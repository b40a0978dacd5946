"""JSON <-> frozen dataclasses (nested dataclasses, tuples, optionals, str dicts)."""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import json
import os
import types
import typing
from collections.abc import Callable
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
    return typing.cast(T, _decoder(typing.cast(Any, cls))(data))


def prepare(cls: type[Any]) -> None:
    """Build the decoder for `cls` now (evaluating type hints costs milliseconds; a process
    that forks workers does it once, before forking)."""
    _decoder(typing.cast(Any, cls))


def _identity(data: Any) -> Any:
    return data


@functools.cache
def _decoder(tp: Any) -> Callable[[Any], Any]:
    """A decoding function per type, built once (decoding runs on every state read)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = _decoder(next(a for a in typing.get_args(tp) if a is not type(None)))
        return lambda d: None if d is None else inner(d)
    if origin is tuple:
        item = _decoder(typing.get_args(tp)[0])
        return tuple if item is _identity else (lambda d: tuple(item(v) for v in d))
    if origin is dict:
        value = _decoder(typing.get_args(tp)[1])
        return lambda d: {str(k): value(v) for k, v in d.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = [(f.name, _decoder(hints[f.name])) for f in dataclasses.fields(tp)]
        cls: Any = tp

        def decode(d: Any) -> Any:
            if not isinstance(d, dict):
                raise InvalidArgument(f"expected an object for {cls.__name__}, got {d!r}")
            return cls(**{name: f(d[name]) for name, f in fields if name in d})
        return decode
    return _identity


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), sort_keys=True)


def loads(cls: type[T], text: str) -> T:
    return from_jsonable(cls, json.loads(text))


def write_atomic(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Write-to-temp and rename: readers see the old or the new file, never half of one.

    No fsync: every user writes runtime state under the run root (container state, sandbox
    files, OCI bundles), which describes processes that do not survive the machine; a daemon
    or monitor that dies loses nothing the kernel already has (as engine.runtime.store)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        os.fchmod(fd, mode)  # the umask must not narrow it
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
