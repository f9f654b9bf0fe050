"""Sealing client <-> server datagrams (pure).

A datagram keeps its routing header in the clear, authenticated as
associated data; everything after it becomes one AEAD record of the
sender's L{SecureChannel}. Client datagrams carry the sender's HostID in the
header so the server knows which keys to open them with.
"""

from proud_twisted.errors import ProtocolError

# version, type, HostID (client -> server); version, type (server -> client)
CLIENT_DATAGRAM_HEADER = 6
SERVER_DATAGRAM_HEADER = 2


def sealDatagram(channel, data: bytes, headerSize: int) -> bytes:
    header = data[:headerSize]
    return header + channel.seal(data[headerSize:], header)


def openDatagram(channel, data: bytes, headerSize: int) -> bytes:
    """The datagram with its body opened; L{ProtocolError} if forged, cut or replayed."""
    if len(data) < headerSize:
        raise ProtocolError("truncated datagram header")
    header = data[:headerSize]
    return header + channel.open(data[headerSize:], header)


def datagramHostID(data: bytes) -> int:
    """The sender HostID in a client datagram's clear header."""
    if len(data) < CLIENT_DATAGRAM_HEADER:
        raise ProtocolError("truncated datagram header")
    return int.from_bytes(data[2:CLIENT_DATAGRAM_HEADER], "big")
