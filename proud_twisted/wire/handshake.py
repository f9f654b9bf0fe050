"""Handshake messages on the client <-> server TCP stream.

Each message is one frame body: a type byte in 0x40-0x4F (clear of the TCP
message types 1-14 in L{proud_twisted.wire.messages}) followed by fixed-size
fields. The meaning of the fields and the state machines that use them live in
L{proud_twisted.crypto}; this module only declares and parses the bytes.
"""

import construct as c

from proud_twisted.wire._schema import FastCodec, MessageFamily, messageFormat

HANDSHAKE_VERSION = 1
TYPE_RANGE = range(0x40, 0x50)

KEY_SIZE = 32
RANDOM_SIZE = 32
SIGNATURE_SIZE = 64
# ClientFinished seals the 32-byte transcript hash: 32 bytes + 16-byte tag.
CONFIRMATION_SIZE = 48

HandshakeType = c.Enum(
    c.Int8ub,
    CLIENT_HELLO=0x40,
    SERVER_HELLO=0x41,
    CLIENT_FINISHED=0x42,
)

BODIES = {
    "CLIENT_HELLO": c.Struct(
        "version" / c.Int8ub,
        "ephemeral" / c.Bytes(KEY_SIZE),
        "random" / c.Bytes(RANDOM_SIZE),
    ),
    "SERVER_HELLO": c.Struct(
        "ephemeral" / c.Bytes(KEY_SIZE),
        "random" / c.Bytes(RANDOM_SIZE),
        "identity" / c.Bytes(KEY_SIZE),
        "signature" / c.Bytes(SIGNATURE_SIZE),
    ),
    "CLIENT_FINISHED": c.Struct(
        "confirmation" / c.Bytes(CONFIRMATION_SIZE),
    ),
}

HandshakeMessage = messageFormat(HandshakeType, BODIES)
# Every join parses two of these and builds one on the server: the struct
# fast path makes the same bytes at a fifteenth of construct's cost.
FAST_CODECS = FastCodec.forBodies(HandshakeType, BODIES)
_HANDSHAKES = MessageFamily(HandshakeMessage, FAST_CODECS, "handshake message")


def isHandshakeMessage(body: bytes) -> bool:
    """Whether a frame body's type byte belongs to the handshake range."""
    return bool(body) and body[0] in TYPE_RANGE


def encodeHandshake(kind: str, **fields) -> bytes:
    """Build the frame body of a handshake message C{kind}."""
    return _HANDSHAKES.encode(kind, fields)


def decodeHandshake(body: bytes):
    """Parse a frame body into C{(kind, fields)}; raises L{ProtocolError}."""
    return _HANDSHAKES.decode(body)
