"""Datagrams on the client <-> server UDP path.

Every datagram starts with the wire version byte and a type byte. Relay and
user datagrams also have a fast path in L{proud_twisted.wire.relay}.
"""

import struct

import construct as c

from proud_twisted.errors import ProtocolError
from proud_twisted.wire._schema import (
    AddressStruct,
    BundleEntries,
    FastCodec,
    HostID,
    MessageFamily,
    RelayFlags,
    Targets,
    Token,
    messageFormat,
)
from proud_twisted.wire.messages import WIRE_VERSION

DatagramType = c.Enum(
    c.Int8ub,
    UDP_HELLO=1,
    UDP_HELLO_ACK=2,
    UDP_USER=3,
    UDP_RELAY=4,
    UDP_RELAYED=5,
    UDP_PING=6,
    UDP_PONG=7,
    UDP_RELAY_BUNDLE=8,
    UDP_PEER_FRAME=9,
    UDP_CHALLENGE=10,
    UDP_CHALLENGE_RESPONSE=11,
)

BODIES = {
    "UDP_HELLO": c.Struct("hostID" / HostID, "token" / Token, "padding" / c.GreedyBytes),
    "UDP_HELLO_ACK": c.Struct("address" / AddressStruct),
    "UDP_USER": c.Struct("hostID" / HostID, "flags" / RelayFlags,
                         "payload" / c.GreedyBytes),
    "UDP_RELAY": c.Struct("hostID" / HostID, "flags" / RelayFlags,
                          "targets" / Targets, "payload" / c.GreedyBytes),
    "UDP_RELAYED": c.Struct("sender" / HostID, "flags" / RelayFlags,
                            "payload" / c.GreedyBytes),
    # The keepalive over UDP, as PING and PONG on TCP (see messages.py).
    "UDP_PING": c.Struct("hostID" / HostID, "timestamp" / c.Float64b, "rtt" / c.Float64b),
    "UDP_PONG": c.Struct("timestamp" / c.Float64b, "serverTime" / c.Float64b),
    # A pair session frame relayed as is: sealed end to end by the pair, so
    # the server neither opens nor re-seals it.
    "UDP_PEER_FRAME": c.Struct("sender" / HostID, "flags" / RelayFlags,
                               "payload" / c.GreedyBytes),
    "UDP_RELAY_BUNDLE": c.Struct("hostID" / HostID, "flags" / RelayFlags,
                                 "entries" / BundleEntries),
    # A new UDP address is taken only once it answers a challenge sent there:
    # a hello with a forged source address never makes the server send to it.
    "UDP_CHALLENGE": c.Struct("challenge" / Token),
    "UDP_CHALLENGE_RESPONSE": c.Struct("hostID" / HostID, "challenge" / Token),
}

_Body = messageFormat(DatagramType, BODIES)
Datagram = c.Struct("wireVersion" / c.Const(WIRE_VERSION, c.Int8ub),
                    "message" / _Body)


FAST_CODECS = FastCodec.forBodies(DatagramType, BODIES, prefix=bytes([WIRE_VERSION]))
_DATAGRAMS = MessageFamily(Datagram, FAST_CODECS, "UDP datagram", typeAt=1, nested="message")


def encodeDatagram(kind: str, **fields) -> bytes:
    """Build a whole UDP datagram of type C{kind}."""
    return _DATAGRAMS.encode(kind, fields)


def decodeDatagram(data: bytes):
    """Parse a UDP datagram into C{(kind, fields)}; raises L{ProtocolError}."""
    if data[:1] != bytes([WIRE_VERSION]):
        raise ProtocolError("UDP datagram of an unknown wire version")
    return _DATAGRAMS.decode(data)


UDP_PING_TYPE = 6
UDP_CLUSTER_TYPE = 12
"""A datagram from another server of the cluster (L{proud_twisted.cluster.direct}):
not a client's, so not in L{DatagramType}."""
_PING_SIZE = 22         # version, type, HostID, timestamp, rtt
_PONG_HEADER = bytes([WIRE_VERSION, 7])
_DOUBLE = struct.Struct(">d")


def decodePing(data: bytes) -> tuple[int, bytes, float]:
    """A UDP_PING's sender, its timestamp as sent (for L{encodePong} to
    echo) and the round trip it reports: every idle client sends one every
    few seconds, so the server reads it without decoding a container."""
    if len(data) != _PING_SIZE:
        raise ProtocolError(f"malformed UDP_PING: {len(data)} bytes")
    return int.from_bytes(data[2:6], "big"), data[6:14], _DOUBLE.unpack_from(data, 14)[0]


def encodePong(echo: bytes, serverTime: float) -> bytes:
    """The UDP_PONG answering a ping whose timestamp was C{echo} (the bytes
    L{encodeDatagram} builds): 4 bytes shorter than the ping."""
    return _PONG_HEADER + echo + _DOUBLE.pack(serverTime)
