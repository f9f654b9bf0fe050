"""The RMI encoding declared with construct: the schema of record.

L{schemaFor} gives, for any annotation L{proud_twisted.rmi.codec} supports,
a construct that builds and parses the same bytes as its fast codec (the
tests check both ways on generated values). Nothing on the hot path uses it.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

import construct as c

from proud_twisted.rmi.codec import HostID

_PRIMITIVES: dict[Any, Any] = {
    int: c.ZigZag,
    HostID: c.VarInt,
    bool: c.Flag,
    float: c.Float64l,
    str: c.PascalString(c.VarInt, "utf8"),
    bytes: c.Prefixed(c.VarInt, c.GreedyBytes),
}


class _Call(c.Adapter):  # type: ignore[misc]
    """Maps a parsed value with C{decode} and a value to build with C{encode}."""

    def __init__(self, subcon: Any, decode: Any, encode: Any) -> None:
        super().__init__(subcon)
        self._decodeValue = decode
        self._encodeValue = encode

    def _decode(self, obj: Any, context: Any, path: Any) -> Any:
        return self._decodeValue(obj)

    def _encode(self, obj: Any, context: Any, path: Any) -> Any:
        return self._encodeValue(obj)


def _optional(inner: Any) -> Any:
    present = c.Struct("present" / c.Flag, "value" / c.If(c.this.present, inner))
    return _Call(present, lambda obj: obj.value if obj.present else None,
                 lambda value: {"present": value is not None, "value": value})


def _enum(cls: type[enum.Enum]) -> Any:
    if issubclass(cls, int):
        return _Call(c.ZigZag, cls, lambda value: int(cls(value)))
    members = list(cls)
    return _Call(c.VarInt, lambda i: members[i], members.index)


def schemaFor(annotation: Any) -> Any:
    """The construct of an annotation (the same bytes as C{codecFor(annotation)})."""
    primitive = _PRIMITIVES.get(annotation)
    if primitive is not None:
        return primitive
    if annotation is None or annotation is type(None):
        return c.Pass
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        (inner,) = [a for a in args if a is not type(None)]
        return _optional(schemaFor(inner))
    if origin is list:
        return _Call(c.PrefixedArray(c.VarInt, schemaFor(args[0])), list, list)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _Call(c.PrefixedArray(c.VarInt, schemaFor(args[0])), tuple, list)
        if args == ((),):
            args = ()
        return _Call(c.Sequence(*[schemaFor(a) for a in args]), tuple, list)
    if origin is dict:
        pair = c.Sequence(schemaFor(args[0]), schemaFor(args[1]))
        return _Call(c.PrefixedArray(c.VarInt, pair),
                     dict,
                     lambda mapping: [[k, v] for k, v in mapping.items()])
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum(annotation)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        hints = typing.get_type_hints(annotation)
        names = [f.name for f in dataclasses.fields(annotation) if f.init]
        struct = c.Struct(*[name / schemaFor(hints[name]) for name in names])
        cls: Any = annotation
        return _Call(struct, lambda obj: cls(*[obj[n] for n in names]),
                     lambda value: {n: getattr(value, n) for n in names})
    raise TypeError(f"{annotation!r} is not a supported RMI type")


def argumentsSchema(annotations: list[Any]) -> Any:
    """The construct of a method's arguments, in order (parses to a list)."""
    return c.Sequence(*[schemaFor(a) for a in annotations])
