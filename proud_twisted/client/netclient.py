"""L{NetClient}: the client facade a game client programs against.

It holds the game API (L{INetClient}) and nothing else; the protocols talk
to its private L{ClientEngine}.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.application import service
from twisted.internet import defer
from zope.interface import implementer

from proud_twisted._glue.sessiondriver import DEFAULT_SESSION_CONFIG
from proud_twisted._glue.udpbuffers import DEFAULT_CLIENT_UDP_BUFFER, SocketBuffers
from proud_twisted.client.engine import ClientEngine
from proud_twisted.client.joinloop import JoinLoop
from proud_twisted.client.pathstate import PathConfig
from proud_twisted.client.peerlinks import DEFAULT_MAX_DIRECT_PEERS
from proud_twisted.constants import ServerUdpState
from proud_twisted.crypto import PublicIdentity
from proud_twisted.events import NetClientEvents
from proud_twisted.info import Address, PeerInfo, Targets
from proud_twisted.interfaces import INetClient, INetClientEvent, documentedBy
from proud_twisted.rmi.attachment import RmiHost
from proud_twisted.rudp import DeliveryMode, Priority, SessionConfig
from proud_twisted.rudp.config import deliveryMode
from proud_twisted.wire.framing import DEFAULT_MAX_MESSAGE_LENGTH

DEFAULT_JOIN_TIMEOUT = 10.0
DEFAULT_LINGER = 2.0


@implementer(INetClient)
@documentedBy(INetClient)
class NetClient(service.Service, RmiHost):
    """A game client: joins a server, hears about its groups, messages peers.

    Join with L{connect}, or run it as a Twisted service (in a
    C{MultiService}, say): C{startService} joins the server at C{host} and
    C{port} and joins again, backing off, after a failure or a leave, until
    C{stopService}.

    @param events: an L{INetClientEvent} provider (default: a no-op one).
    @param reactor: a reactor providing C{IReactorTime}, C{IReactorTCP} and
        C{IReactorUDP} (default: the global one), or a
        L{proud_twisted.testing} host reactor.
    @param maxMessageLength: the longest user message, in bytes.
    @param udpInterface: the address to bind the UDP socket to; empty (the
        default): every address of the family the server was reached by.
    @param sessionConfig: the L{SessionConfig} of the reliable UDP sessions.
    @param pathConfig: hole punching and direct-path keepalive settings.
    @param maxDirectPeers: most peers talked to directly at once; the rest
        stay relayed.
    @param encryption: protect all traffic (default); must match the server.
    @param serverKey: the server's L{PublicIdentity}; when given, a server
        that cannot prove it holds the matching private key is refused.
    @param udpBufferSize: bytes of kernel receive and send buffer to ask for
        on the UDP port (0: the OS defaults); L{udpSocketBuffers} holds the
        sizes in force once joined.
    @param host: the server's address or name, for C{startService}.
    @param port: the server's TCP port, for C{startService}.
    @param protocolVersion: what C{startService} joins with (see L{connect}).
    @param userData: what C{startService} joins with (see L{connect}).
    """

    def __init__(self, events: INetClientEvent | NetClientEvents | None = None, *,
                 reactor: Any = None,
                 maxMessageLength: int = DEFAULT_MAX_MESSAGE_LENGTH,
                 udpInterface: str = "",
                 sessionConfig: SessionConfig = DEFAULT_SESSION_CONFIG,
                 pathConfig: PathConfig = PathConfig(),
                 maxDirectPeers: int = DEFAULT_MAX_DIRECT_PEERS,
                 encryption: bool = True, serverKey: PublicIdentity | None = None,
                 udpBufferSize: int = DEFAULT_CLIENT_UDP_BUFFER,
                 host: str | None = None, port: int = 0,
                 protocolVersion: uuid.UUID | str | bytes = uuid.UUID(int=0),
                 userData: bytes = b"") -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._server = (host, port, protocolVersion, userData)
        self._engine = ClientEngine(
            events if events is not None else NetClientEvents(), reactor,
            maxMessageLength=maxMessageLength, udpInterface=udpInterface,
            sessionConfig=sessionConfig, pathConfig=pathConfig,
            maxDirectPeers=maxDirectPeers, encryption=encryption, serverKey=serverKey,
            udpBufferSize=udpBufferSize)
        self._joinLoop = JoinLoop(reactor, self._joinConfigured, self.disconnect)
        self._engine.leftServer = self._joinLoop.left

    # Service

    def startService(self) -> None:
        """Join the server given to the constructor, and stay joined."""
        if self._server[0] is None:
            raise ValueError("NetClient(host=..., port=...) is needed to start it as a service")
        service.Service.startService(self)
        self._joinLoop.start()

    def stopService(self) -> defer.Deferred[None]:
        """Leave the server (see L{disconnect}) and stop joining again."""
        service.Service.stopService(self)
        self._stopRmi("the client stopped")
        return self._joinLoop.stop()

    def _joinConfigured(self) -> defer.Deferred[int]:
        host, port, protocolVersion, userData = self._server
        assert host is not None
        return self.connect(host, port, protocolVersion, userData)

    # Attributes

    @property
    def events(self) -> INetClientEvent | NetClientEvents:
        return self._engine.events

    @property
    def udpSocketBuffers(self) -> SocketBuffers | None:
        return self._engine.udpSocketBuffers

    # The game API: see INetClient for what each does.

    def connect(self, host: str, port: int, protocolVersion: uuid.UUID | str | bytes,
                userData: bytes = b"",
                timeout: float = DEFAULT_JOIN_TIMEOUT) -> defer.Deferred[int]:
        return self._engine.connect(host, port, protocolVersion, userData, timeout)

    def disconnect(self, comment: bytes = b"",
                   linger: float = DEFAULT_LINGER) -> defer.Deferred[None]:
        self._stopRmi("the client disconnected")
        return self._engine.disconnect(comment, linger)

    def getLocalHostID(self) -> int:
        return self._engine.getLocalHostID()

    def getLocalJoinedP2PGroups(self) -> frozenset[int]:
        return self._engine.getLocalJoinedP2PGroups()

    def getGroupMembers(self, group: int) -> frozenset[int]:
        return self._engine.getGroupMembers(group)

    def getPeerInfo(self, peer: int) -> PeerInfo:
        return self._engine.getPeerInfo(peer)

    def getPeerHostIDs(self) -> list[int]:
        return self._engine.getPeerHostIDs()

    def whenDirect(self, peer: int) -> defer.Deferred[Address]:
        return self._engine.whenDirect(peer)

    def forceRelay(self, peer: int, on: bool = True) -> None:
        self._engine.forceRelay(peer, on)

    def getServerUdpState(self) -> ServerUdpState:
        return self._engine.getServerUdpState()

    def getServerTime(self) -> float | None:
        return self._engine.getServerTime()

    def getServerTimeError(self) -> float | None:
        return self._engine.getServerTimeError()

    def getServerRtt(self) -> float | None:
        return self._engine.getServerRtt()

    def getPublicUdpAddress(self) -> Address | None:
        return self._engine.getPublicUdpAddress()

    def getLocalUdpAddress(self) -> Address | None:
        return self._engine.getLocalUdpAddress()

    def send(self, targets: Targets, payload: bytes, reliable: bool = True, *,
             mode: DeliveryMode | None = None, priority: Priority = Priority.MEDIUM,
             channel: int = 0) -> None:
        self._engine.send(targets, payload, deliveryMode(reliable, mode), priority, channel)

    def _isGroup(self, hostID: int) -> bool:
        return hostID in self._engine.peerTable.groups
