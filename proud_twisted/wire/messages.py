"""Messages on the client <-> server TCP stream.

Each frame body is a type byte followed by that type's fields, declared once
below with construct. Relay frames, the hot path, also have a C{struct} fast
path in L{proud_twisted.wire.relay}, and every message of plain fields
(membership notices, pair keys, acknowledgements) one made from its
declaration (L{FastCodec}); tests check that each agrees with construct.
"""

import uuid

import construct as c

from proud_twisted.wire._schema import (
    AddressStruct,
    Blob,
    BundleEntries,
    FastCodec,
    HostID,
    MessageFamily,
    RelayFlags,
    Targets,
    Token,
    messageFormat,
)

WIRE_VERSION = 5

RTT_UNKNOWN = -1.0
"""The round trip a keepalive ping reports before the client has measured one."""


def versionBytes(protocolVersion) -> bytes:
    """A protocol version as 16 bytes, from a C{uuid.UUID}, its string or bytes."""
    if isinstance(protocolVersion, uuid.UUID):
        return protocolVersion.bytes
    if isinstance(protocolVersion, str):
        return uuid.UUID(protocolVersion).bytes
    if isinstance(protocolVersion, bytes) and len(protocolVersion) == 16:
        return protocolVersion
    raise TypeError("protocolVersion must be a UUID, its string, or 16 bytes")


MessageType = c.Enum(
    c.Int8ub,
    HELLO=1,
    JOIN_ACCEPTED=2,
    JOIN_REFUSED=3,
    MEMBER_JOIN=4,
    MEMBER_JOIN_ACK=5,
    MEMBER_LEAVE=6,
    PEER_ADDRESSES=7,
    LAN_ADDRESS=8,
    USER_MESSAGE=9,
    RELAY_REQUEST=10,
    RELAYED=11,
    PING=12,
    PONG=13,
    GOODBYE=14,
    PEER_PAIR=15,
    UDP_LOST=16,
    P2P_PATH=17,
    RELAY_BUNDLE=18,
    # Connection recovery (proud_twisted.wire.stream says which frames are counted).
    STREAM_ACK=40,
    RECOVERY=41,
    RESUME_REQUEST=42,
    RESUME_CHALLENGE=43,
    RESUME=44,
    RESUME_ACCEPTED=45,
    RESUME_REFUSED=46,
    MEMBER_OFFLINE=47,
    MEMBER_ONLINE=48,
    SESSION_ENDED=49,
    # Moving a client to another server of a cluster.
    MOVE=50,
    MOVE_ARRIVE=51,
    MOVE_ACCEPTED=52,
)

BODIES = {
    "HELLO": c.Struct(
        "wireVersion" / c.Int8ub,
        "protocolVersion" / c.Bytes(16),
        # The fingerprints of the client's RMI declarations (proud_twisted.rmi.fingerprint).
        "rmiFingerprints" / c.Default(c.Prefixed(c.VarInt, c.GreedyBytes), b""),
        "userData" / c.GreedyBytes,
    ),
    "JOIN_ACCEPTED": c.Struct(
        "hostID" / HostID,
        "udpToken" / Token,
        "udpPort" / c.Int16ub,
        "clientTimeoutMs" / c.Int32ub,
        "reply" / c.GreedyBytes,
    ),
    "JOIN_REFUSED": c.Struct(
        "reason" / c.Int8ub,
        "reply" / c.GreedyBytes,
    ),
    "MEMBER_JOIN": c.Struct(
        "groupID" / HostID,
        "memberID" / HostID,
        "memberCount" / c.Int32ub,
        "ackID" / c.Int32ub,
        "udpAddress" / AddressStruct,
        "lanAddress" / AddressStruct,
        "message" / c.GreedyBytes,
    ),
    # The notices a client processed in one turn, acknowledged together.
    "MEMBER_JOIN_ACK": c.Struct("ackIDs" / c.GreedyRange(c.Int32ub)),
    "MEMBER_LEAVE": c.Struct(
        "groupID" / HostID,
        "memberID" / HostID,
        "memberCount" / c.Int32ub,
    ),
    "PEER_ADDRESSES": c.Struct(
        "peerID" / HostID,
        "udpAddress" / AddressStruct,
        "lanAddress" / AddressStruct,
    ),
    "LAN_ADDRESS": c.Struct("address" / AddressStruct),
    "USER_MESSAGE": c.Struct("flags" / RelayFlags, "payload" / c.GreedyBytes),
    "RELAY_REQUEST": c.Struct(
        "flags" / RelayFlags,
        "targets" / Targets,
        "payload" / c.GreedyBytes,
    ),
    "RELAYED": c.Struct(
        "sender" / HostID,
        "flags" / RelayFlags,
        "payload" / c.GreedyBytes,
    ),
    # A keepalive: the client's clock, and its round trip to the server
    # (RTT_UNKNOWN before it has one). The answer echoes the timestamp and
    # adds the server's clock; it is never longer than the ping.
    "PING": c.Struct("timestamp" / c.Float64b, "rtt" / c.Float64b),
    "PONG": c.Struct("timestamp" / c.Float64b, "serverTime" / c.Float64b),
    "GOODBYE": c.Struct("comment" / Blob),
    "UDP_LOST": c.Struct(),
    "PEER_PAIR": c.Struct(
        "peerID" / HostID,
        "epoch" / c.Int32ub,
        "pairSecret" / c.Bytes(32),
        "policy" / c.Int8ub,
    ),
    "P2P_PATH": c.Struct("peerID" / HostID, "direct" / c.Flag),
    "RELAY_BUNDLE": c.Struct("flags" / RelayFlags, "entries" / BundleEntries),
    # Counted frames the sender of this message has received on the stream.
    "STREAM_ACK": c.Struct("received" / c.Int64ub),
    # After JOIN_ACCEPTED when recovery is on: the window, and the resume
    # secret when there is no handshake to derive it from (else empty).
    "RECOVERY": c.Struct("windowMs" / c.Int32ub, "resumeSecret" / Blob),
    "RESUME_REQUEST": c.Struct("wireVersion" / c.Int8ub, "hostID" / HostID),
    "RESUME_CHALLENGE": c.Struct("nonce" / Token),
    "RESUME": c.Struct(
        "hostID" / HostID,
        "received" / c.Int64ub,
        "proof" / c.Bytes(32),
    ),
    "RESUME_ACCEPTED": c.Struct("received" / c.Int64ub),
    "RESUME_REFUSED": c.Struct("reason" / c.Int8ub),
    "MEMBER_OFFLINE": c.Struct("memberID" / HostID),
    "MEMBER_ONLINE": c.Struct("memberID" / HostID),
    # The server closes the connection on purpose: no resume.
    "SESSION_ENDED": c.Struct(),
    # Go to another server of the cluster (counted: it comes after everything
    # sent before it, and is sent again across a resume).
    "MOVE": c.Struct(
        "host" / Blob,
        "tcpPort" / c.Int16ub,
        "udpPort" / c.Int16ub,
        "token" / Token,
        "serverID" / Blob,
    ),
    # The moved client's first message to its new server.
    "MOVE_ARRIVE": c.Struct("wireVersion" / c.Int8ub, "hostID" / HostID, "token" / Token),
    # Admitted: the new server's UDP token and port, its timeout, and the
    # resume secret when there is no handshake to derive it from.
    "MOVE_ACCEPTED": c.Struct(
        "udpToken" / Token,
        "udpPort" / c.Int16ub,
        "clientTimeoutMs" / c.Int32ub,
        "resumeSecret" / Blob,
    ),
}

# PEER_PAIR policy bits.
POLICY_DIRECT_ALLOWED = 0x01
POLICY_PUNCH_AT_ONCE = 0x02

TcpMessage = messageFormat(MessageType, BODIES)
FAST_CODECS = FastCodec.forBodies(MessageType, BODIES)
_MESSAGES = MessageFamily(TcpMessage, FAST_CODECS, "TCP message")


def encodeMessage(kind: str, **fields) -> bytes:
    """Build the frame body of a C{kind} message (without length prefix)."""
    return _MESSAGES.encode(kind, fields)


def decodeMessage(data: bytes):
    """Parse a frame body into C{(kind, fields)}; raises L{ProtocolError}."""
    return _MESSAGES.decode(data)
