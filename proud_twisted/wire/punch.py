"""Datagrams between two peers on the shared client UDP socket.

Every peer datagram starts like a client <-> server datagram: the wire
version byte, then a type byte, here in 0x20-0x2F so one socket can tell
peer traffic from server traffic (server types are 1-7), then the sender's
and the receiver's HostIDs::

    control:      version type sender:u32 receiver:u32 nonce:8 tag:16   (34 bytes)
    DIRECT_DATA:  version type sender:u32 receiver:u32 payload...

The control types (probe, answer, ping, pong) carry an 8-byte nonce and an
HMAC-SHA256 tag, truncated to 16 bytes, over every byte before it, keyed
with the pair's probe key. An answer or pong echoes the nonce it answers.
DIRECT_DATA carries an opaque pair-session datagram that protects itself.

construct declares every layout; DIRECT_DATA, which runs once per game
datagram, also has a C{struct} fast path that C{tests/test_holepunch.py}
checks against the schema.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import NamedTuple

import construct as c

from proud_twisted.errors import ProtocolError
from proud_twisted.wire._schema import HostID, buildWith, messageFormat, parseWith
from proud_twisted.wire.messages import WIRE_VERSION

PUNCH_PROBE = 0x20
PUNCH_ANSWER = 0x21
DIRECT_PING = 0x22
DIRECT_PONG = 0x23
DIRECT_DATA = 0x24

# Type bytes reserved for peer datagrams; the ones above are in use.
PEER_TYPE_FIRST = 0x20
PEER_TYPE_LAST = 0x2F

CONTROL_TYPES = frozenset((PUNCH_PROBE, PUNCH_ANSWER, DIRECT_PING, DIRECT_PONG))
NONCE_SIZE = 8
TAG_SIZE = 16

PeerDatagramType = c.Enum(
    c.Int8ub,
    PUNCH_PROBE=PUNCH_PROBE,
    PUNCH_ANSWER=PUNCH_ANSWER,
    DIRECT_PING=DIRECT_PING,
    DIRECT_PONG=DIRECT_PONG,
    DIRECT_DATA=DIRECT_DATA,
)

_Control = c.Struct("sender" / HostID, "receiver" / HostID,
                    "nonce" / c.Bytes(NONCE_SIZE), "tag" / c.Bytes(TAG_SIZE))

BODIES = {
    "PUNCH_PROBE": _Control,
    "PUNCH_ANSWER": _Control,
    "DIRECT_PING": _Control,
    "DIRECT_PONG": _Control,
    "DIRECT_DATA": c.Struct("sender" / HostID, "receiver" / HostID,
                            "payload" / c.GreedyBytes),
}

PeerDatagram = c.Struct("wireVersion" / c.Const(WIRE_VERSION, c.Int8ub),
                        "message" / messageFormat(PeerDatagramType, BODIES))

_DATA_HEAD = struct.Struct(">BBII")     # version, type, sender, receiver
_TYPE_VALUES = {name: int(value) for name, value in PeerDatagramType.encmapping.items()}


class PeerMessage(NamedTuple):
    """A decoded peer datagram; C{nonce} and C{tag} are empty for DIRECT_DATA."""

    kind: int
    sender: int
    receiver: int
    nonce: bytes = b""
    tag: bytes = b""
    payload: bytes = b""


def isPeerDatagram(data: bytes) -> bool:
    """Whether C{data} claims to be a peer datagram (version and type byte only)."""
    return (len(data) >= 2 and data[0] == WIRE_VERSION
            and PEER_TYPE_FIRST <= data[1] <= PEER_TYPE_LAST)


def computeTag(key: bytes, signed: bytes) -> bytes:
    """HMAC-SHA256 of C{signed} under C{key}, truncated to L{TAG_SIZE} bytes."""
    return hmac.new(key, signed, hashlib.sha256).digest()[:TAG_SIZE]


def encodeControl(kind: int, sender: int, receiver: int, nonce: bytes, key: bytes) -> bytes:
    """Build an authenticated probe, answer, ping or pong."""
    if kind not in CONTROL_TYPES:
        raise ProtocolError(f"type {kind:#x} is not a peer control datagram")
    name = PeerDatagramType.decmapping[kind]
    body = {"sender": sender, "receiver": receiver, "nonce": nonce, "tag": bytes(TAG_SIZE)}
    unsigned = buildWith(PeerDatagram, {"message": {"type": name, "body": body}}, name)
    signed = unsigned[:-TAG_SIZE]
    return signed + computeTag(key, signed)


def tagIsValid(data: bytes, key: bytes) -> bool:
    """Whether the last L{TAG_SIZE} bytes of C{data} authenticate the rest."""
    if len(data) <= TAG_SIZE:
        return False
    return hmac.compare_digest(data[-TAG_SIZE:], computeTag(key, data[:-TAG_SIZE]))


def encodeDirectData(sender: int, receiver: int, payload: bytes) -> bytes:
    """Build a DIRECT_DATA datagram (fast path)."""
    try:
        return _DATA_HEAD.pack(WIRE_VERSION, DIRECT_DATA, sender, receiver) + payload
    except struct.error as e:
        raise ProtocolError(f"cannot encode DIRECT_DATA: {e}") from None


def decodeDirectData(data: bytes) -> tuple[int, int, bytes]:
    """Return C{(sender, receiver, payload)} of a DIRECT_DATA datagram (fast path)."""
    if len(data) < _DATA_HEAD.size:
        raise ProtocolError("truncated DIRECT_DATA datagram")
    version, kind, sender, receiver = _DATA_HEAD.unpack_from(data)
    if version != WIRE_VERSION or kind != DIRECT_DATA:
        raise ProtocolError("not a DIRECT_DATA datagram")
    return sender, receiver, data[_DATA_HEAD.size:]


def decodePeerDatagram(data: bytes) -> PeerMessage:
    """Parse any peer datagram; raises L{ProtocolError}. Does not check the tag."""
    if not isPeerDatagram(data):
        raise ProtocolError("not a peer datagram of this wire version")
    if data[1] == DIRECT_DATA:
        sender, receiver, payload = decodeDirectData(data)
        return PeerMessage(DIRECT_DATA, sender, receiver, payload=payload)
    parsed = parseWith(PeerDatagram, data, "peer datagram")
    body = parsed.message.body
    return PeerMessage(_TYPE_VALUES[str(parsed.message.type)], body.sender,
                       body.receiver, body.nonce, body.tag)
