"""construct helpers shared by the TCP and UDP schemas."""

from __future__ import annotations

import struct

import construct as c

from proud_twisted.errors import ProtocolError

HostID = c.Int32ub
Blob = c.Prefixed(c.Int16ub, c.GreedyBytes)
Token = c.Bytes(16)

# An (host, port) address; an empty host and port 0 stand for "unknown".
AddressStruct = c.Struct("host" / c.PascalString(c.Int8ub, "ascii"), "port" / c.Int16ub)
RelayFlags = c.Int8ub
Targets = c.PrefixedArray(c.Int16ub, HostID)
# Frames for several targets in one relay request: (target, frame) pairs.
BundleEntries = c.PrefixedArray(c.Int16ub, c.Struct("target" / HostID, "frame" / Blob))


def messageFormat(typeEnum, bodies):
    """A C{Struct} of a type byte and a body chosen by it; unknown types fail."""
    return c.Struct(
        "type" / typeEnum,
        "body" / c.Switch(c.this.type, bodies,
                          default=c.Error),
        c.Terminated,
    )


def parseWith(fmt, data: bytes, what: str):
    """Parse C{data}, turning every construct failure into L{ProtocolError}."""
    try:
        return fmt.parse(data)
    except (c.ConstructError, UnicodeDecodeError, ValueError, OverflowError) as e:
        raise ProtocolError(f"malformed {what}: {e.__class__.__name__}") from None


def buildWith(fmt, container, what: str) -> bytes:
    try:
        return fmt.build(container)
    except (c.ConstructError, UnicodeEncodeError, ValueError, OverflowError) as e:
        raise ProtocolError(f"cannot encode {what}: {e}") from None


class FastCodec:
    """C{struct} encoding and decoding of one message type whose body
    C{construct} declares with fixed-size fields, addresses and at most a
    trailing C{GreedyBytes} or C{GreedyRange} of one fixed-size number (a
    list): the same bytes and fields as the declaration
    (a test holds the two together), at a fraction of its cost. Group
    changes send and receive such messages by the square of the members.

    Fields decode into a C{construct.Container}, as the declaration's do.
    """

    def __init__(self, kind: str, prefix: bytes, body: c.Struct) -> None:
        self.kind = kind
        self.prefix = prefix
        segments = []           # (what, names, struct.Struct or None), in order
        run, names = ">", []
        for sub in body.subcons:
            field = sub.subcon
            if isinstance(field, c.FormatField):
                run += field.fmtstr[1:]
            elif isinstance(field, c.Bytes) and isinstance(field.length, int):
                run += f"{field.length}s"
            else:
                if names:
                    segments.append(("fixed", names, struct.Struct(run)))
                    run, names = ">", []
                if field is AddressStruct:
                    segments.append(("address", [sub.name], None))
                elif field is c.GreedyBytes and sub is body.subcons[-1]:
                    segments.append(("tail", [sub.name], None))
                elif (isinstance(field, c.GreedyRange) and sub is body.subcons[-1]
                      and isinstance(field.subcon, c.FormatField)):
                    segments.append(("list", [sub.name], struct.Struct(field.subcon.fmtstr)))
                else:
                    raise TypeError(f"{kind}: field {sub.name} has no fast path")
                continue
            names.append(sub.name)
        if names:
            segments.append(("fixed", names, struct.Struct(run)))
        self._segments = segments
        self._exactBytes = {sub.name: sub.subcon.length for sub in body.subcons
                            if isinstance(sub.subcon, c.Bytes)}

    @classmethod
    def forBodies(cls, typeEnum, bodies: dict, prefix: bytes = b"") -> dict:
        """C{{kind: codec}} for every body the fast path can carry."""
        codecs = {}
        for kind, body in bodies.items():
            try:
                codec = cls(kind, prefix + bytes([typeEnum.encmapping[kind]]), body)
            except TypeError:
                continue
            codecs[kind] = codec
        return codecs

    def encode(self, fields: dict) -> bytes:
        try:
            for name, length in self._exactBytes.items():
                if len(fields[name]) != length:
                    raise ValueError(f"{name} must be {length} bytes")
            parts = [self.prefix]
            for what, names, layout in self._segments:
                if what == "fixed":
                    parts.append(layout.pack(*[fields[name] for name in names]))
                elif what == "address":
                    address = fields[names[0]]
                    host = address["host"].encode("ascii")
                    parts.append(bytes((len(host),)) + host + _PORT.pack(address["port"]))
                elif what == "list":
                    parts.extend(map(layout.pack, fields[names[0]]))
                else:
                    parts.append(bytes(fields[names[0]]))
            return b"".join(parts)
        except (struct.error, KeyError, TypeError, ValueError, UnicodeEncodeError) as e:
            raise ProtocolError(f"cannot encode {self.kind}: {e}") from None

    def decode(self, data: bytes) -> c.Container:
        """The fields of C{data}, whose prefix and type byte were checked."""
        fields = c.Container()
        position = len(self.prefix)
        end = len(data)
        for what, names, layout in self._segments:
            if what == "fixed":
                if end - position < layout.size:
                    raise ProtocolError(f"malformed {self.kind}: truncated")
                fields.update(zip(names, layout.unpack_from(data, position)))
                position += layout.size
            elif what == "address":
                if position >= end:
                    raise ProtocolError(f"malformed {self.kind}: truncated address")
                hostEnd = position + 1 + data[position]
                if hostEnd + 2 > end:
                    raise ProtocolError(f"malformed {self.kind}: truncated address")
                try:
                    host = data[position + 1:hostEnd].decode("ascii")
                except UnicodeDecodeError:
                    raise ProtocolError(f"malformed {self.kind}: address host") from None
                (port,) = _PORT.unpack_from(data, hostEnd)
                fields[names[0]] = c.Container(host=host, port=port)
                position = hostEnd + 2
            elif what == "list":
                if (end - position) % layout.size:
                    raise ProtocolError(f"malformed {self.kind}: partial list item")
                fields[names[0]] = [item for (item,) in layout.iter_unpack(data[position:])]
                position = end
            else:
                fields[names[0]] = data[position:]
                position = end
        if position != end:
            raise ProtocolError(f"malformed {self.kind}: trailing bytes")
        return fields


_PORT = struct.Struct(">H")


class MessageFamily:
    """Encoding and decoding of one family of messages (TCP messages, UDP
    datagrams, handshake messages): a type's L{FastCodec} where it has one,
    its construct declaration otherwise.

    @param fmt: the construct format of a whole message.
    @param fastCodecs: the family's L{FastCodec}s by type name.
    @param what: what a message is called in errors.
    @param typeAt: the offset of the type byte.
    @param nested: the name of the field of C{fmt} that holds the type and
        body, if they are not its top level.
    """

    def __init__(self, fmt, fastCodecs: dict, what: str, typeAt: int = 0,
                 nested: str | None = None) -> None:
        self.fmt = fmt
        self.fastCodecs = fastCodecs
        self.what = what
        self.typeAt = typeAt
        self.nested = nested
        self._byType = {codec.prefix[-1]: codec for codec in fastCodecs.values()}

    def encode(self, kind: str, fields: dict) -> bytes:
        codec = self.fastCodecs.get(kind)
        if codec is not None:
            return codec.encode(fields)
        message = {"type": kind, "body": fields}
        return buildWith(self.fmt, {self.nested: message} if self.nested else message, kind)

    def decode(self, data: bytes):
        """C{(kind, fields)}; L{ProtocolError} if C{data} is no such message."""
        codec = self._byType.get(data[self.typeAt]) if len(data) > self.typeAt else None
        if codec is not None:
            return codec.kind, codec.decode(data)
        parsed = parseWith(self.fmt, data, self.what)
        if self.nested:
            parsed = parsed[self.nested]
        return str(parsed.type), parsed.body
