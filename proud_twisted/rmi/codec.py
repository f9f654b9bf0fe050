"""The fast path of the RMI encoding: one L{TypeCodec} per annotation.

Each codec appends a value to a C{bytearray} (C{encode(value, out)}) and
reads one from C{bytes} at a position (C{decode(data, pos)} returns the value
and the next position). L{proud_twisted.rmi.schema} declares the same
encoding with construct, the schema of record; the tests check that both
agree byte for byte.

The encoding:

    - C{int}: a zigzag varint (-64..63 take one byte), within 64 bits;
    - L{HostID}: an unsigned varint;
    - C{bool}: one byte, 0 or 1 (any other byte reads as true);
    - C{float}: eight bytes, IEEE 754 little-endian;
    - C{str} (UTF-8) and C{bytes}: a varint length, then the bytes;
    - an C{IntEnum}: its value as an C{int}; any other C{Enum}: the varint
      index of the member in the class;
    - C{list[T]}, C{tuple[T, ...]}: a varint count, then the items;
      C{dict[K, V]}: a varint count, then key, value, key, value...;
    - C{tuple[A, B]}: A then B; a dataclass: its fields in order;
    - C{Optional[T]}: a byte, 0 (None) or 1 followed by T.

A decoder never trusts a declared size: a length or count larger than the
bytes left is refused before anything is allocated, and every item of a
list or dict takes at least one byte, so decoding a message allocates at
most a few objects per byte of it.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import types
import typing
from collections.abc import Callable
from typing import Any, NewType

from proud_twisted.rmi.varint import decodeVarint, encodeVarint

HostID = NewType("HostID", int)
"""A HostID argument: the server, a client, a peer or a group (an unsigned varint)."""

Encoder = Callable[[Any, bytearray], None]
Decoder = Callable[[bytes, int], "tuple[Any, int]"]

INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1
_F64 = struct.Struct("<d")


class DeclarationError(TypeError):
    """A remote interface declaration that cannot be encoded (an unsupported
    annotation, a reserved or overlapping message ID, ...)."""


@dataclasses.dataclass(frozen=True)
class TypeCodec:
    """How one annotation travels.

    @ivar name: the canonical name of the type (part of the fingerprint).
    @ivar minSize: the fewest bytes a value takes.
    @ivar maxSize: the most bytes a value takes, or None when unbounded.
    """

    name: str
    encode: Encoder
    decode: Decoder
    minSize: int
    maxSize: int | None
    annotation: Any = None

    def describeSize(self) -> str:
        if self.maxSize == self.minSize:
            return f"{self.minSize} B"
        if self.maxSize is None:
            return f"{self.minSize}+ B"
        return f"{self.minSize}-{self.maxSize} B"


def encodeInt(v: int, out: bytearray) -> None:
    if 0 <= v < 0x40:
        out.append(v << 1)
        return
    if not INT_MIN <= v <= INT_MAX:
        raise OverflowError(f"{v} is outside the 64-bit signed range")
    encodeVarint(v << 1 if v >= 0 else ((-v) << 1) - 1, out)


def decodeInt(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    if b < 0x80:
        return (-(b >> 1) - 1 if b & 1 else b >> 1), pos + 1
    z, pos = decodeVarint(data, pos)
    return (-(z >> 1) - 1 if z & 1 else z >> 1), pos


def encodeHostID(v: int, out: bytearray) -> None:
    if 0 <= v < 0x80:
        out.append(v)
    else:
        encodeVarint(v, out)


def encodeBool(v: bool, out: bytearray) -> None:
    out.append(1 if v else 0)


def decodeBool(data: bytes, pos: int) -> tuple[bool, int]:
    return data[pos] != 0, pos + 1


def encodeFloat(v: float, out: bytearray) -> None:
    out += _F64.pack(v)


def decodeFloat(data: bytes, pos: int) -> tuple[float, int]:
    return _F64.unpack_from(data, pos)[0], pos + 8


def encodeStr(v: str, out: bytearray) -> None:
    encodeBytes(v.encode("utf-8"), out)


def _span(data: bytes, pos: int) -> tuple[int, int]:
    """The start and end of a varint-length-prefixed run, checked against
    what is left before anything is read into memory."""
    n = data[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = decodeVarint(data, pos)
    end = pos + n
    if end > len(data):
        raise ValueError(f"a length of {n} bytes runs past the message's end")
    return pos, end


def decodeStr(data: bytes, pos: int) -> tuple[str, int]:
    start, end = _span(data, pos)
    return data[start:end].decode("utf-8"), end


def encodeBytes(v: bytes, out: bytearray) -> None:
    n = len(v)
    if n < 0x80:
        out.append(n)
    else:
        encodeVarint(n, out)
    out += v


def decodeBytes(data: bytes, pos: int) -> tuple[bytes, int]:
    start, end = _span(data, pos)
    return data[start:end], end


def _count(data: bytes, pos: int, itemSize: int) -> tuple[int, int]:
    """A varint item count, refused if that many items cannot fit in what is left."""
    n, pos = decodeVarint(data, pos)
    if n * itemSize > len(data) - pos:
        raise ValueError(f"a count of {n} items runs past the message's end")
    return n, pos


# combinators

def _listCodec(item: TypeCodec, name: str, container: type) -> TypeCodec:
    itemEncode, itemDecode, itemSize = item.encode, item.decode, item.minSize

    def encode(values: Any, out: bytearray) -> None:
        encodeVarint(len(values), out)
        for v in values:
            itemEncode(v, out)

    def decode(data: bytes, pos: int) -> tuple[Any, int]:
        n, pos = _count(data, pos, itemSize)
        result = []
        append = result.append
        for _ in range(n):
            v, pos = itemDecode(data, pos)
            append(v)
        return (result if container is list else container(result)), pos

    return TypeCodec(name, encode, decode, 1, None)


def _dictCodec(key: TypeCodec, value: TypeCodec, name: str) -> TypeCodec:
    keyEncode, keyDecode = key.encode, key.decode
    valueEncode, valueDecode = value.encode, value.decode
    pairSize = key.minSize + value.minSize

    def encode(mapping: Any, out: bytearray) -> None:
        encodeVarint(len(mapping), out)
        for k, v in mapping.items():
            keyEncode(k, out)
            valueEncode(v, out)

    def decode(data: bytes, pos: int) -> tuple[Any, int]:
        n, pos = _count(data, pos, pairSize)
        result = {}
        for _ in range(n):
            k, pos = keyDecode(data, pos)
            result[k], pos = valueDecode(data, pos)
        return result, pos

    return TypeCodec(name, encode, decode, 1, None)


def _sequenceCodec(members: list[TypeCodec], name: str,
                   build: Callable[..., Any], explode: Callable[[Any], Any]) -> TypeCodec:
    """A fixed sequence of members: a tuple's items or a dataclass's fields."""
    encoders = [m.encode for m in members]
    decoders = [m.decode for m in members]
    count = len(members)

    def encode(value: Any, out: bytearray) -> None:
        items = explode(value)
        if len(items) != count:
            raise ValueError(f"{name} takes {count} items, not {len(items)}")
        for enc, item in zip(encoders, items, strict=False):
            enc(item, out)

    def decode(data: bytes, pos: int) -> tuple[Any, int]:
        items = []
        for dec in decoders:
            item, pos = dec(data, pos)
            items.append(item)
        return build(*items), pos

    sizes = [m.maxSize for m in members]
    maxSize = None if None in sizes else sum(s for s in sizes if s is not None)
    return TypeCodec(name, encode, decode, sum(m.minSize for m in members), maxSize)


def _optionalCodec(inner: TypeCodec) -> TypeCodec:
    innerEncode, innerDecode = inner.encode, inner.decode

    def encode(value: Any, out: bytearray) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(1)
            innerEncode(value, out)

    def decode(data: bytes, pos: int) -> tuple[Any, int]:
        if data[pos] == 0:
            return None, pos + 1
        return innerDecode(data, pos + 1)

    maxSize = None if inner.maxSize is None else inner.maxSize + 1
    return TypeCodec(f"Optional[{inner.name}]", encode, decode, 1, maxSize)


def _enumCodec(cls: type[enum.Enum]) -> TypeCodec:
    members = list(cls)
    if not members:
        raise DeclarationError(f"enum {cls.__name__} has no members")
    if issubclass(cls, int):
        def encode(value: Any, out: bytearray) -> None:
            encodeInt(int(cls(value)), out)

        def decode(data: bytes, pos: int) -> tuple[Any, int]:
            raw, pos = decodeInt(data, pos)
            return cls(raw), pos

        values = ",".join(f"{m.name}={int(m)}" for m in members)
        sizes = [len(_encoded(encodeInt, int(m))) for m in members]
    else:
        index = {m: i for i, m in enumerate(members)}

        def encode(value: Any, out: bytearray) -> None:
            encodeVarint(index[value], out)

        def decode(data: bytes, pos: int) -> tuple[Any, int]:
            i, pos = decodeVarint(data, pos)
            if i >= len(members):
                raise ValueError(f"no member {i} in {cls.__name__}")
            return members[i], pos

        values = ",".join(m.name for m in members)
        sizes = [len(_encoded(encodeVarint, i)) for i in range(len(members))]
    return TypeCodec(f"{cls.__name__}{{{values}}}", encode, decode, min(sizes), max(sizes),
                     cls)


def _encoded(encode: Encoder, value: Any) -> bytes:
    out = bytearray()
    encode(value, out)
    return bytes(out)


_PRIMITIVES = {
    int: TypeCodec("int", encodeInt, decodeInt, 1, 10, int),
    HostID: TypeCodec("HostID", encodeHostID, decodeVarint, 1, 10, HostID),
    bool: TypeCodec("bool", encodeBool, decodeBool, 1, 1, bool),
    float: TypeCodec("float", encodeFloat, decodeFloat, 8, 8, float),
    str: TypeCodec("str", encodeStr, decodeStr, 1, None, str),
    bytes: TypeCodec("bytes", encodeBytes, decodeBytes, 1, None, bytes),
}
NONE_CODEC = TypeCodec("None", lambda value, out: None, lambda data, pos: (None, pos), 0, 0,
                       None)
"""A result of C{None}: nothing on the wire."""


def codecFor(annotation: Any, where: str = "") -> TypeCodec:
    """The L{TypeCodec} of a (resolved) annotation.

    @raise DeclarationError: the annotation is not supported; C{where} names
        the parameter in the message.
    """
    codec = _build(annotation, where)
    return dataclasses.replace(codec, annotation=annotation)


def _build(annotation: Any, where: str) -> TypeCodec:
    primitive = _PRIMITIVES.get(annotation)
    if primitive is not None:
        return primitive
    if annotation is None or annotation is type(None):
        return NONE_CODEC
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        others = [a for a in args if a is not type(None)]
        if len(others) == 1 and len(args) == 2:
            return _optionalCodec(codecFor(others[0], where))
        raise DeclarationError(f"{where}: only Optional[T] unions are supported, "
                               f"not {annotation!r}")
    if origin is list and len(args) == 1:
        item = _itemCodec(args[0], where)
        return _listCodec(item, f"list[{item.name}]", list)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _itemCodec(args[0], where)
            return _listCodec(item, f"tuple[{item.name}, ...]", tuple)
        if args == ((),):
            args = ()
        members = [codecFor(a, where) for a in args]
        return _sequenceCodec(members, f"tuple[{', '.join(m.name for m in members)}]",
                              lambda *items: items, lambda value: value)
    if origin is dict and len(args) == 2:
        key, value = _itemCodec(args[0], where), codecFor(args[1], where)
        keyType = typing.get_origin(args[0]) or args[0]
        if getattr(keyType, "__hash__", None) is None:
            raise DeclarationError(f"{where}: a dict key must be hashable, not {key.name}")
        return _dictCodec(key, value, f"dict[{key.name}, {value.name}]")
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enumCodec(annotation)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _dataclassCodec(annotation, where)
    raise DeclarationError(f"{where}: {annotation!r} is not a supported RMI type")


def _itemCodec(annotation: Any, where: str) -> TypeCodec:
    """The codec of a list, tuple[T, ...] or dict item, which must take a byte
    at least (so that a declared count is bounded by the bytes left)."""
    item = codecFor(annotation, where)
    if item.minSize < 1:
        raise DeclarationError(f"{where}: {item.name} takes no bytes, so it cannot be an "
                               f"item of a list or dict")
    return item


def _dataclassCodec(cls: type, where: str) -> TypeCodec:
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    members = [codecFor(hints[f.name], f"{where}.{f.name}") for f in fields]
    names = [f.name for f in fields]
    signature = ", ".join(f"{n}: {m.name}" for n, m in zip(names, members, strict=False))

    def explode(value: Any) -> Any:
        if type(value) is not cls:
            raise TypeError(f"expected a {cls.__name__}, not {type(value).__name__}")
        return [getattr(value, n) for n in names]

    return _sequenceCodec(members, f"{cls.__name__}({signature})", cls, explode)
