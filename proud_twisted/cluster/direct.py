"""L{DirectPaths}: relayed frames sent straight to another server over UDP (pure).

A frame one server relays to a client of another, when the pair's own
reliable session carries it (so that a lost datagram is sent again end to
end), need not go through Redis: it goes from this server's UDP port to the
other's, sealed. Everything else between servers still goes through Redis.

Keys: every server draws a random secret when it starts and publishes it
in its Redis entry (C{ServerInfo.relayKey}); Redis and the servers are the
cluster's trust boundary. The key from A to B is HKDF of A's secret over
both incarnations, so each direction of each pair of server processes has
its own key: a datagram for B does not open at C, nor at B started again.
Each datagram is one AEAD record of a L{SecureChannel} (counter, replay
window); its clear header, which names the sender, is authenticated with it.

The frames of one client's relay request for another server's clients
leave together, in as few datagrams as they fit (one seal and one system
call each): a message to a view group of many players costs little more
than one to a single player.

A path is used only while the other server answers this one's probes: a
probe goes to each member every heartbeat (and when it joins), the member
answers to the UDP address that is in this server's entry, never to where
the probe came from, and a path not answered for C{deadAfter} seconds goes
back to Redis. Nothing here answers what it could not open.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Final

from proud_twisted._crypto.channel import OVERHEAD, SecureChannel
from proud_twisted._crypto.kdf import hkdf
from proud_twisted.errors import ProtocolError
from proud_twisted.wire.datagrams import UDP_CLUSTER_TYPE
from proud_twisted.wire.messages import WIRE_VERSION

SECRET_SIZE: Final = 32
PROBE: Final = 1
ANSWER: Final = 2
FRAME: Final = 3
MAX_DATAGRAM: Final = 1472
"""The longest datagram sent between servers: an Ethernet MTU (1500) less
the IPv4 and UDP headers. A pair session's frame fits with the default
C{mtu} of 1,200 (this envelope adds 39 bytes and the sender's ID); a longer
one goes through Redis."""

_ENTRY_HEAD = struct.Struct(">IIBH")        # sender HostID, target HostID, flags, length
_KINDS = (PROBE, ANSWER, FRAME)


class UnknownSender(ProtocolError):
    """A datagram naming a server there is no path to: not a member, or
    one this server has not heard of yet (it started at the same moment)."""

    def __init__(self, serverID: str) -> None:
        super().__init__(f"a cluster datagram from {serverID!r}, which has no path here")
        self.serverID = serverID


@dataclass
class _Path:
    address: tuple[str, int]
    channel: SecureChannel
    answeredAt: float | None = None


class DirectPaths:
    """This server's UDP paths to the other members.

    @param serverID: this server's ID.
    @param incarnation: this process's (L{ServerInfo.incarnation}).
    @param deadAfter: seconds without an answer to a probe after which a
        path is not used (frames go through Redis again).
    """

    def __init__(self, serverID: str, incarnation: str, deadAfter: float) -> None:
        self.serverID = serverID
        self.incarnation = incarnation
        self.deadAfter = deadAfter
        self.secret = os.urandom(SECRET_SIZE)
        self._header = bytes([WIRE_VERSION, UDP_CLUSTER_TYPE, len(serverID)]) + serverID.encode()
        # Entries' bytes a datagram holds: less the header, the kind and the seal.
        self._room = MAX_DATAGRAM - len(self._header) - 1 - OVERHEAD
        self._paths: dict[str, _Path] = {}

    @property
    def relayKey(self) -> str:
        """What this server publishes in its entry."""
        return self.secret.hex()

    def add(self, serverID: str, incarnation: str, relayKey: str,
            address: tuple[str, int]) -> None:
        """Member C{serverID} (this process of it): a path to it, unanswered
        until it answers a probe; none if it publishes no key."""
        self._paths.pop(serverID, None)
        try:
            theirs = bytes.fromhex(relayKey)
        except ValueError:
            return
        if len(theirs) != SECRET_SIZE:
            return
        sendKey = _directionKey(self.secret, self.incarnation, incarnation)
        receiveKey = _directionKey(theirs, incarnation, self.incarnation)
        self._paths[serverID] = _Path(address, SecureChannel(sendKey, receiveKey))

    def remove(self, serverID: str) -> None:
        self._paths.pop(serverID, None)

    def isUp(self, serverID: str, now: float) -> bool:
        """Whether C{serverID} answered a probe in the last C{deadAfter} seconds."""
        path = self._paths.get(serverID)
        return (path is not None and path.answeredAt is not None
                and now - path.answeredAt <= self.deadAfter)

    def members(self) -> list[str]:
        return sorted(self._paths)

    def probe(self, serverID: str) -> tuple[bytes, tuple[str, int]] | None:
        """A probe for C{serverID} and where to send it (None: no path)."""
        return self._sealed(serverID, PROBE, b"") if serverID in self._paths else None

    def fits(self, payload: bytes) -> bool:
        """Whether a frame of C{payload} fits in one datagram."""
        return len(payload) <= self._room - _ENTRY_HEAD.size

    def frames(self, serverID: str,
               entries: list[bytes]) -> list[tuple[bytes, tuple[str, int]]] | None:
        """The L{encodeEntry} C{entries} (each L{fits}) sealed for
        C{serverID}, in order, each datagram holding as many as fit, with
        its address; None if there is no path to it."""
        if serverID not in self._paths:
            return None
        datagrams, bundle, size = [], [], 0
        for entry in entries:
            if bundle and size + len(entry) > self._room:
                datagrams.append(self._sealed(serverID, FRAME, b"".join(bundle)))
                bundle, size = [], 0
            bundle.append(entry)
            size += len(entry)
        if bundle:
            datagrams.append(self._sealed(serverID, FRAME, b"".join(bundle)))
        return datagrams

    def open(self, data: bytes, now: float) -> tuple[str, int, bytes]:
        """C{(sender, kind, body)} of a datagram from another server: an
        answer marks its path up. L{UnknownSender} if it names no member
        with a path here; L{ProtocolError} if forged, damaged, replayed or
        not one of ours."""
        if len(data) < 4 or data[0] != WIRE_VERSION or data[1] != UDP_CLUSTER_TYPE:
            raise ProtocolError("not a datagram between cluster servers")
        size = data[2]
        end = 3 + size
        try:
            sender = data[3:end].decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("a cluster datagram with a malformed server ID") from None
        if len(data) < end + 1:
            raise ProtocolError("a truncated cluster datagram")
        path = self._paths.get(sender)
        if path is None:
            raise UnknownSender(sender)
        header = data[:end + 1]
        body = path.channel.open(data[end + 1:], header)
        kind = data[end]
        if kind not in _KINDS:
            raise ProtocolError(f"a cluster datagram of unknown kind {kind}")
        if kind == ANSWER:
            path.answeredAt = now
        return sender, kind, body

    def answer(self, serverID: str) -> tuple[bytes, tuple[str, int]]:
        """The answer to a probe of C{serverID} (it has a path: the probe
        opened), to its published address."""
        return self._sealed(serverID, ANSWER, b"")

    def _sealed(self, serverID: str, kind: int, body: bytes) -> tuple[bytes, tuple[str, int]]:
        path = self._paths[serverID]
        header = self._header + bytes((kind,))
        return header + path.channel.seal(body, header), path.address


def encodeEntry(sender: int, target: int, flags: int, payload: bytes) -> bytes:
    """One relayed frame, as a FRAME datagram carries it."""
    return _ENTRY_HEAD.pack(sender, target, flags, len(payload)) + payload


def decodeFrames(body: bytes) -> list[tuple[int, int, int, bytes]]:
    """C{(sender, target, flags, payload)} of each frame in a FRAME's
    opened body; L{ProtocolError}, and none, if any is malformed."""
    frames, offset, size = [], 0, len(body)
    while offset < size:
        if size - offset < _ENTRY_HEAD.size:
            raise ProtocolError("a truncated relayed frame between servers")
        sender, target, flags, length = _ENTRY_HEAD.unpack_from(body, offset)
        offset += _ENTRY_HEAD.size
        if length > size - offset:
            raise ProtocolError("a relayed frame between servers longer than its datagram")
        frames.append((sender, target, flags, body[offset:offset + length]))
        offset += length
    if not frames:
        raise ProtocolError("a datagram of relayed frames between servers without one")
    return frames


def _directionKey(secret: bytes, fromIncarnation: str, toIncarnation: str) -> bytes:
    info = b"proud-twisted cluster direct " + f"{fromIncarnation}>{toIncarnation}".encode()
    return hkdf(secret, info, 32)
