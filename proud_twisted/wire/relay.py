"""Fast paths for the per-message frames: relay requests, relayed and user data.

These layouts are declared with construct in L{messages} and L{datagrams};
the functions here produce and read the same bytes with C{struct}, because
they run once per game message. C{tests/test_wire.py} checks both agree.
"""

import struct

from proud_twisted.errors import ProtocolError
from proud_twisted.wire.messages import WIRE_VERSION

FLAG_RELIABLE = 0x01
# The payload is a pair (or client-server) session datagram, not a user message.
FLAG_SESSION = 0x02
# An empty relay message asking the peer to start hole punching toward us.
FLAG_PUNCH = 0x04

# TCP message type bytes (see messages.MessageType).
TCP_USER_MESSAGE = 9
TCP_RELAY_REQUEST = 10
TCP_RELAYED = 11
TCP_RELAY_BUNDLE = 18
# UDP datagram type bytes (see datagrams.DatagramType).
UDP_USER = 3
UDP_RELAY = 4
UDP_RELAYED = 5
UDP_RELAY_BUNDLE = 8
UDP_PEER_FRAME = 9

_RELAY_REQUEST_HEAD = struct.Struct(">BBH")        # type, flags, target count
_RELAYED_HEAD = struct.Struct(">BIB")              # type, sender, flags
_UDP_SENDER_HEAD = struct.Struct(">BBIB")          # version, type, host, flags
_UDP_RELAY_HEAD = struct.Struct(">BBIBH")          # version, type, host, flags, count
_EPOCH = struct.Struct(">I")
_BUNDLE_TCP_HEAD = struct.Struct(">BBH")            # type, flags, entry count
_BUNDLE_UDP_HEAD = struct.Struct(">BBIBH")          # version, type, host, flags, count
_ENTRY_HEAD = struct.Struct(">IH")                  # target, frame length
BUNDLE_ENTRY_OVERHEAD = _ENTRY_HEAD.size
MAX_RELAY_TARGETS = 1024
"""Most targets (or bundle entries) in one relay request; a server treats
more as a protocol error, and a client never sends more."""
BUNDLE_UDP_OVERHEAD = _BUNDLE_UDP_HEAD.size
_TARGET_CACHE = {}


def _targetsFormat(count: int) -> struct.Struct:
    fmt = _TARGET_CACHE.get(count)
    if fmt is None:
        fmt = _TARGET_CACHE[count] = struct.Struct(f">{count}I")
    return fmt


def encodeTcpUserMessage(flags: int, payload: bytes) -> bytes:
    return bytes((TCP_USER_MESSAGE, flags)) + payload


def decodeTcpUserMessage(data: bytes):
    """Return C{(flags, payload)} of a USER_MESSAGE frame body."""
    if len(data) < 2:
        raise ProtocolError("truncated user message")
    return data[1], data[2:]


def encodeTcpRelayRequest(targets, flags: int, payload: bytes) -> bytes:
    head = _RELAY_REQUEST_HEAD.pack(TCP_RELAY_REQUEST, flags, len(targets))
    return head + _targetsFormat(len(targets)).pack(*targets) + payload


def encodeTcpRelayed(sender: int, flags: int, payload: bytes) -> bytes:
    return _RELAYED_HEAD.pack(TCP_RELAYED, sender, flags) + payload


def decodeTcpRelayRequest(data: bytes):
    """Return C{(flags, targets, payload)} of a RELAY_REQUEST frame body."""
    return _decodeTargets(data, _RELAY_REQUEST_HEAD, "relay request")[1:]


def decodeTcpRelayed(data: bytes):
    """Return C{(sender, flags, payload)} of a RELAYED frame body."""
    if len(data) < _RELAYED_HEAD.size:
        raise ProtocolError("truncated relayed message")
    _, sender, flags = _RELAYED_HEAD.unpack_from(data)
    return sender, flags, data[_RELAYED_HEAD.size:]


def encodeUdpUser(hostID: int, flags: int, payload: bytes) -> bytes:
    return _UDP_SENDER_HEAD.pack(WIRE_VERSION, UDP_USER, hostID, flags) + payload


def encodeUdpRelayed(sender: int, flags: int, payload: bytes) -> bytes:
    return _UDP_SENDER_HEAD.pack(WIRE_VERSION, UDP_RELAYED, sender, flags) + payload


def encodeUdpRelay(hostID: int, targets, flags: int, payload: bytes) -> bytes:
    head = _UDP_RELAY_HEAD.pack(WIRE_VERSION, UDP_RELAY, hostID, flags, len(targets))
    return head + _targetsFormat(len(targets)).pack(*targets) + payload


def encodeUdpPeerFrame(sender: int, flags: int, payload: bytes) -> bytes:
    return _UDP_SENDER_HEAD.pack(WIRE_VERSION, UDP_PEER_FRAME, sender, flags) + payload


def decodeUdpSender(data: bytes):
    """Return C{(host, flags, payload)} of a UDP_USER, UDP_RELAYED or UDP_PEER_FRAME."""
    if len(data) < _UDP_SENDER_HEAD.size:
        raise ProtocolError("truncated UDP datagram")
    _, _, host, flags = _UDP_SENDER_HEAD.unpack_from(data)
    return host, flags, data[_UDP_SENDER_HEAD.size:]


def decodeUdpRelay(data: bytes):
    """Return C{(host, flags, targets, payload)} of a UDP_RELAY datagram."""
    return _decodeTargets(data, _UDP_RELAY_HEAD, "UDP relay request")[-4:]


def _decodeTargets(data: bytes, head: struct.Struct, what: str):
    if len(data) < head.size:
        raise ProtocolError(f"truncated {what}")
    fields = head.unpack_from(data)
    count = fields[-1]
    end = head.size + 4 * count
    if len(data) < end:
        raise ProtocolError(f"{what} announces {count} targets but is too short")
    targets = _targetsFormat(count).unpack_from(data, head.size)
    return fields[:-1] + (targets, data[end:])


def encodeSessionFrame(epoch: int, datagram: bytes) -> bytes:
    """A pair session datagram tagged with the pair's epoch, for the relay."""
    return _EPOCH.pack(epoch) + datagram


def decodeSessionFrame(payload: bytes):
    """Return C{(epoch, datagram)} of a relayed session frame."""
    if len(payload) < _EPOCH.size:
        raise ProtocolError("truncated session frame")
    return _EPOCH.unpack_from(payload)[0], payload[_EPOCH.size:]


def encodeTcpRelayBundle(flags: int, entries) -> bytes:
    """One relay request carrying a different frame for each target."""
    return _BUNDLE_TCP_HEAD.pack(TCP_RELAY_BUNDLE, flags, len(entries)) + _entries(entries)


def encodeUdpRelayBundle(hostID: int, flags: int, entries) -> bytes:
    head = _BUNDLE_UDP_HEAD.pack(WIRE_VERSION, UDP_RELAY_BUNDLE, hostID, flags, len(entries))
    return head + _entries(entries)


def decodeTcpRelayBundle(data: bytes):
    """Return C{(flags, [(target, frame), ...])} of a RELAY_BUNDLE frame body."""
    fields = _decodeBundle(data, _BUNDLE_TCP_HEAD)
    return fields[1], fields[-1]


def decodeUdpRelayBundle(data: bytes):
    """Return C{(host, flags, [(target, frame), ...])} of a UDP_RELAY_BUNDLE datagram."""
    return _decodeBundle(data, _BUNDLE_UDP_HEAD)[2:]


def _entries(entries) -> bytes:
    pack = _ENTRY_HEAD.pack
    return b"".join(pack(target, len(frame)) + frame for target, frame in entries)


def _decodeBundle(data: bytes, head: struct.Struct):
    if len(data) < head.size:
        raise ProtocolError("truncated relay bundle")
    fields = head.unpack_from(data)
    offset = head.size
    entries = []
    for _ in range(fields[-1]):
        if len(data) < offset + _ENTRY_HEAD.size:
            raise ProtocolError("relay bundle shorter than its entry count")
        target, length = _ENTRY_HEAD.unpack_from(data, offset)
        offset += _ENTRY_HEAD.size
        if len(data) < offset + length:
            raise ProtocolError("relay bundle entry longer than the bundle")
        entries.append((target, data[offset:offset + length]))
        offset += length
    if offset != len(data):
        raise ProtocolError("trailing bytes after a relay bundle")
    return fields[:-1] + (entries,)
