"""Frozen value classes for the plugin exec path, without importing ``dataclasses``.

``dataclasses`` imports ``inspect`` (and with it ast, dis, tokenize): on this project's
2-core machines that is ~40 ms of CPU in every plugin exec, more than a reference plugin
spends in total. The plugin modules import ``dataclass``/``field`` from here at run time and
from ``dataclasses`` under TYPE_CHECKING, so mypy checks them as real frozen dataclasses.
Supported: ``@dataclass(frozen=True)`` (init by position or keyword, defaults and
``field(default_factory=...)``, repr, eq, hash, immutability). Nothing else is.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

_MISSING = object()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen value (as dataclasses raises)."""


class _Factory:
    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory


def field(*, default_factory: Callable[[], Any]) -> Any:
    return _Factory(default_factory)


def dataclass(*, frozen: bool) -> Callable[[type[T]], type[T]]:
    if not frozen:
        raise TypeError("engine.networkdriver.plugins.value only makes frozen values")
    return _make


def _make(cls: type[T]) -> type[T]:
    # the class's own annotations, in order (inspect would cost what this module saves)
    names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063
    defaults: dict[str, Any] = {}
    for name in names:
        if name in cls.__dict__:
            defaults[name] = cls.__dict__[name]
            delattr(cls, name)
    qualname = cls.__qualname__

    known = frozenset(names)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # the fields go into the instance's dict at once (as object.__setattr__ one by one
        # would put them): the engine builds a dozen of these per CNI ADD+DEL
        if args:
            if len(args) > len(names):
                raise TypeError(f"{qualname}() takes {len(names)} arguments, {len(args)} given")
            for key in kwargs:
                if key in names[:len(args)]:
                    raise TypeError(f"{qualname}() got an unexpected or repeated argument "
                                    f"{key!r}")
            kwargs.update(zip(names, args, strict=False))
        if not known.issuperset(kwargs):
            bad = next(key for key in kwargs if key not in known)
            raise TypeError(f"{qualname}() got an unexpected or repeated argument {bad!r}")
        if len(kwargs) != len(names):
            for name in names:
                if name not in kwargs:
                    default = defaults.get(name, _MISSING)
                    if default is _MISSING:
                        raise TypeError(f"{qualname}() missing required argument {name!r}")
                    kwargs[name] = (default.factory() if isinstance(default, _Factory)
                                    else default)
        self.__dict__.update(kwargs)

    def _astuple(self: Any) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in names)

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _astuple(self) == _astuple(other)

    def __hash__(self: Any) -> int:
        return hash(_astuple(self))

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{qualname}({inner})"

    for fn in (__init__, __setattr__, __delattr__, __eq__, __hash__, __repr__):
        fn.__qualname__ = f"{qualname}.{fn.__name__}"
        setattr(cls, fn.__name__, fn)
    setattr(cls, "__match_args__", names)  # noqa: B010 - mypy forbids the plain assignment
    return cls
