"""What servers say to each other through Redis, as bytes (pure).

Every message on a cluster channel is one envelope::

    b"PC" | version (1) | kind (1) | sender length (1) | sender | body

 - C{MESSAGE}: channel length (1), channel, then the payload
   (L{Cluster.send} and L{Cluster.publish});
 - C{ROUTE}: delivery mode (1), priority (1), channel (1), target count
   (2), the HostIDs (4 each), then the payload (L{NetServer.send} to
   clients that live on another process, with its options);
 - C{JOIN}: the sender's L{ServerInfo} JSON; C{LEAVE}: nothing more;
 - C{LEASE}: the index (4) of the HostID block the sender leased;
 - C{CONTROL}: a JSON object, for P2P groups that span servers
   (L{proud_twisted.server.remote});
 - C{FRAME}: sender HostID (4), target HostID (4), flags (1), then a frame
   one client relays to its peer, a client of the receiving server.

Anything else, or anything cut short, raises L{ProtocolError}: a Redis
shared with other software may carry anything.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from proud_twisted.errors import ProtocolError
from proud_twisted.rudp.config import DeliveryMode, Priority

MAGIC = b"PC"
VERSION = 1
MESSAGE, ROUTE, JOIN, LEAVE, LEASE, CONTROL, FRAME = range(1, 8)
KINDS = frozenset((MESSAGE, ROUTE, JOIN, LEAVE, LEASE, CONTROL, FRAME))
MAX_ROUTE_TARGETS = 0xFFFF

_HEAD = struct.Struct("!2sBBB")
_ROUTE = struct.Struct("!BBBH")
_BLOCK = struct.Struct("!I")
_FRAME = struct.Struct("!IIB")


class Envelope(NamedTuple):
    """One decoded envelope (a tuple: one is made for every frame that
    crosses servers, and a frozen dataclass of these fields takes four
    times as long to make)."""

    kind: int
    sender: str
    channel: str = ""
    payload: bytes = b""
    targets: tuple[int, ...] = ()
    mode: DeliveryMode = DeliveryMode.RELIABLE
    priority: Priority = Priority.MEDIUM
    sendChannel: int = 0
    block: int = 0
    frameFrom: int = 0
    frameTo: int = 0
    flags: int = 0


def _head(kind: int, sender: str) -> bytes:
    name = sender.encode()
    return _HEAD.pack(MAGIC, VERSION, kind, len(name)) + name


def encodeMessage(sender: str, channel: str, payload: bytes) -> bytes:
    name = channel.encode()
    if len(name) > 255:
        raise ValueError(f"channel {channel!r} is longer than 255 bytes")
    return b"".join((_head(MESSAGE, sender), bytes((len(name),)), name, payload))


def encodeRoute(sender: str, targets, payload: bytes, mode: DeliveryMode = DeliveryMode.RELIABLE,
                priority: Priority = Priority.MEDIUM, channel: int = 0) -> bytes:
    targets = list(targets)
    if not 0 < len(targets) <= MAX_ROUTE_TARGETS:
        raise ValueError(f"{len(targets)} targets (1 to {MAX_ROUTE_TARGETS})")
    return b"".join((_head(ROUTE, sender),
                     _ROUTE.pack(mode, priority, channel, len(targets)),
                     struct.pack(f"!{len(targets)}I", *targets), payload))


def encodeJoin(sender: str, infoJSON: bytes) -> bytes:
    return _head(JOIN, sender) + infoJSON


def encodeLeave(sender: str) -> bytes:
    return _head(LEAVE, sender)


def encodeLease(sender: str, block: int) -> bytes:
    return _head(LEASE, sender) + _BLOCK.pack(block)


def encodeControl(sender: str, body: bytes) -> bytes:
    return _head(CONTROL, sender) + body


def encodeFrame(sender: str, frameFrom: int, frameTo: int, flags: int, payload: bytes) -> bytes:
    return b"".join((_head(FRAME, sender), _FRAME.pack(frameFrom, frameTo, flags), payload))


def decode(data: bytes) -> Envelope:
    """The envelope in C{data}; L{ProtocolError} if it is not one."""
    if not isinstance(data, bytes) or len(data) < _HEAD.size:
        raise ProtocolError("cluster envelope shorter than its header")
    magic, version, kind, nameLength = _HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise ProtocolError(f"not a version {VERSION} cluster envelope")
    if kind not in KINDS:
        raise ProtocolError(f"unknown cluster envelope kind {kind}")
    at = _HEAD.size + nameLength
    if len(data) < at or nameLength == 0:
        raise ProtocolError("cluster envelope cut short in its sender")
    sender = _text(data[_HEAD.size:at], "sender")
    if kind == MESSAGE:
        if len(data) < at + 1 or len(data) < at + 1 + data[at]:
            raise ProtocolError("cluster message cut short in its channel")
        end = at + 1 + data[at]
        return Envelope(kind, sender, _text(data[at + 1:end], "channel"), data[end:])
    if kind == ROUTE:
        if len(data) < at + _ROUTE.size:
            raise ProtocolError("routed message cut short")
        mode, priority, channel, count = _ROUTE.unpack_from(data, at)
        at += _ROUTE.size
        end = at + 4 * count
        if count == 0 or len(data) < end:
            raise ProtocolError(f"routed message with {count} targets cut short")
        try:
            mode, priority = DeliveryMode(mode), Priority(priority)
        except ValueError as e:
            raise ProtocolError(f"routed message: {e}") from None
        return Envelope(kind, sender, payload=data[end:],
                        targets=struct.unpack_from(f"!{count}I", data, at), mode=mode,
                        priority=priority, sendChannel=channel)
    if kind == FRAME:
        if len(data) < at + _FRAME.size:
            raise ProtocolError("relayed frame cut short")
        frameFrom, frameTo, flags = _FRAME.unpack_from(data, at)
        return Envelope(kind, sender, payload=data[at + _FRAME.size:], frameFrom=frameFrom,
                        frameTo=frameTo, flags=flags)
    if kind == LEASE:
        if len(data) != at + _BLOCK.size:
            raise ProtocolError("lease announcement of the wrong size")
        return Envelope(kind, sender, block=_BLOCK.unpack_from(data, at)[0])
    if kind == LEAVE and len(data) != at:
        raise ProtocolError("leave announcement with trailing bytes")
    return Envelope(kind, sender, payload=data[at:])


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ProtocolError(f"cluster envelope {what} is not UTF-8") from None
