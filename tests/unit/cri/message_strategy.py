"""Hypothesis strategies for runtime.v1 messages, built from the protobuf descriptors.

Every field may be set, with the values a careless or hostile client sends: negative and
huge integers, enum numbers the CRI does not define, paths with `..`, NUL bytes and long
strings, nested messages a few levels deep.
"""
from __future__ import annotations

from typing import Any

from google.protobuf import descriptor as d
from google.protobuf import message as pb_message
from hypothesis import strategies as st

FD = d.FieldDescriptor

_NASTY_STRINGS = st.sampled_from([
    "", "..", "../..", "/a/../b", "/abs/path", "rel/path", "a\x00b", "x" * 300, "=", "a=b",
    "c1", "runc", "busybox", "localhost/prof", "runtime/default", "10.0.0.0/24", "\u00e9",
])
STRINGS = st.one_of(_NASTY_STRINGS, st.text(max_size=12))
INT32 = st.one_of(st.sampled_from([0, 1, -1, 65535, 65536, 2**31 - 1, -(2**31)]),
                  st.integers(-(2**31), 2**31 - 1))
INT64 = st.one_of(st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]),
                  st.integers(-(2**63), 2**63 - 1))
UINT32 = st.integers(0, 2**32 - 1)
UINT64 = st.integers(0, 2**64 - 1)


def _scalar(field: d.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FD.TYPE_STRING:
        return STRINGS
    if t == FD.TYPE_BYTES:
        return st.one_of(st.binary(max_size=8), st.just(b"\xff\xfe"))
    if t == FD.TYPE_BOOL:
        return st.booleans()
    if t == FD.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 200))  # open enums
    if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        return INT32
    if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return INT64
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return UINT32
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return UINT64
    if t in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return st.floats(allow_nan=False, width=32)
    raise AssertionError(f"no strategy for field type {t} of {field.full_name}")


def _is_map(field: d.FieldDescriptor) -> bool:
    return (field.type == FD.TYPE_MESSAGE
            and field.message_type.GetOptions().map_entry)


def _is_repeated(field: d.FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _fill(msg: pb_message.Message, draw: st.DrawFn, depth: int) -> None:
    for field in msg.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        if _is_map(field):
            key_f, value_f = field.message_type.fields_by_name["key"], \
                field.message_type.fields_by_name["value"]
            target = getattr(msg, field.name)
            for _ in range(draw(st.integers(0, 2))):
                key = draw(_scalar(key_f))
                if value_f.type == FD.TYPE_MESSAGE:
                    if depth > 0:
                        _fill(target[key], draw, depth - 1)
                else:
                    target[key] = draw(_scalar(value_f))
        elif field.type == FD.TYPE_MESSAGE:
            if depth <= 0:
                continue
            if _is_repeated(field):
                container = getattr(msg, field.name)
                for _ in range(draw(st.integers(0, 2))):
                    _fill(container.add(), draw, depth - 1)
            else:
                child = getattr(msg, field.name)
                child.SetInParent()
                _fill(child, draw, depth - 1)
        elif _is_repeated(field):
            getattr(msg, field.name).extend(draw(st.lists(_scalar(field), max_size=3)))
        else:
            setattr(msg, field.name, draw(_scalar(field)))


def messages(cls: type[pb_message.Message], *, depth: int = 4
             ) -> st.SearchStrategy[pb_message.Message]:
    """Random instances of ``cls`` (a generated runtime.v1 message class)."""
    @st.composite
    def build(draw: st.DrawFn) -> pb_message.Message:
        msg = cls()
        _fill(msg, draw, depth)
        return msg
    return build()
