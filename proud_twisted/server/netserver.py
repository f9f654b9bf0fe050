"""L{NetServer}: the server facade a game server programs against.

It holds the game API (L{INetServer}) and nothing else; the protocols talk
to its private L{ServerEngine}.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from twisted.application import service
from twisted.internet import defer
from zope.interface import implementer

from proud_twisted._glue.sessiondriver import DEFAULT_SESSION_CONFIG
from proud_twisted._glue.udpbuffers import DEFAULT_SERVER_UDP_BUFFER, SocketBuffers
from proud_twisted.cluster import Cluster
from proud_twisted.constants import HolePunchPolicy
from proud_twisted.crypto import IdentityKey
from proud_twisted.events import NetServerEvents
from proud_twisted.info import (
    Address,
    ClientInfo,
    P2PConnectionStats,
    P2PGroupInfo,
    Targets,
)
from proud_twisted.interfaces import INetServer, INetServerEvent, documentedBy
from proud_twisted.rmi.attachment import RmiHost
from proud_twisted.rudp import DeliveryMode, Priority, SessionConfig
from proud_twisted.rudp.config import deliveryMode
from proud_twisted.server.engine import ServerEngine
from proud_twisted.server.hostids import DEFAULT_QUIET_PERIOD
from proud_twisted.server.metrics import ServerMetrics
from proud_twisted.server.stats import ServerStats
from proud_twisted.wire.framing import DEFAULT_MAX_MESSAGE_LENGTH
from proud_twisted.wire.messages import versionBytes

DEFAULT_CLIENT_TIMEOUT = 20.0
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_LOGIN_TIMEOUT = 5.0
"""Seconds C{onConnectionRequest} has to answer; below the handshake timeout,
so that a slow login is refused with a reason rather than cut."""
DEFAULT_MAX_UNAUTHENTICATED = 10000
"""Connections that have not joined yet; each holds about 2 KiB of server
memory (500 slowloris connections add 1 MB of RSS, bench/attacks.py), so
10,000 hold some 20 MB, and a join storm of 10,000 clients is not refused."""
DEFAULT_BACKLOG = 4096
"""The TCP listen queue: a join storm of thousands of clients must not
overflow it (Twisted's default is 50). Linux caps it at net.core.somaxconn
(4096 since kernel 5.4)."""
DEFAULT_RELAY_BYTES_PER_SECOND = 8 * 1024 * 1024
DEFAULT_RELAY_FRAMES_PER_SECOND = 10000
"""Enough for a sender at the byte limit in full datagrams (8 MiB/s over
1,136-byte session datagrams is 7,385 frames a second) plus the
acknowledgements it relays for what it receives."""
DEFAULT_MAX_CLIENT_OUTPUT = 1024 * 1024
"""Bytes of unsent TCP output the server holds for one client that does not
read: 16 of the largest messages; 10,000 clients all stalled at once hold at
most 10 GiB, one stalled client 1 MiB."""
DEFAULT_RECEIVE_BUDGET = 64 * 1024 * 1024
"""Bytes all clients' reliable UDP sessions with the server may hold in
reorder and reassembly buffers together: each may hold 960 KiB, so some 68
hostile sessions fill it, while an honest one holds about a window (0.3 MB)
for a round trip after a loss: 210 honest sessions recovering at once."""
DEFAULT_CLOSE_LINGER = 2.0
"""Seconds a closed client's last words get to go out before it is cut."""
DEFAULT_RECOVERY_WINDOW = 30.0
"""Seconds a client whose connection dropped has to resume its session."""
DEFAULT_MAX_OFFLINE_CLIENTS = 1000
"""Clients that may wait offline for a resume at once; past it a dropped
client leaves at once. Each holds its state (a few KiB) and at most
C{maxClientOutput} (1 MiB) of reliable output not yet acknowledged, so
1,000 x 1 MiB = about 1 GiB at the very worst, when every one of them had
a full megabyte unacknowledged; a few MiB in all for idle players."""


@implementer(INetServer)
@documentedBy(INetServer)
class NetServer(service.Service, RmiHost):
    """A game server: accepts clients, owns P2P groups, relays between members.

    @param events: an L{INetServerEvent} provider (default: a no-op one).
    @param protocolVersion: a UUID (or its string, or 16 bytes); clients with
        another one are refused.
    @param tcpPort: the TCP port to listen on (0: any free one).
    @param udpPort: the UDP port to listen on (0: any free one).
    @param interface: the address to bind both to (empty: every IPv4 one).
    @param reactor: a reactor providing C{IReactorTime}, C{IReactorTCP} and
        C{IReactorUDP} (default: the global one), or a
        L{proud_twisted.testing} host reactor.
    @param maxMessageLength: the longest user message, in bytes.
    @param clientTimeout: seconds of silence after which a client is dropped.
    @param allowEmptyGroups: whether a group outlives its last member.
    @param hostIDQuietPeriod: seconds before a released HostID is reused.
    @param sessionConfig: the L{SessionConfig} of the reliable UDP sessions.
    @param holePunchPolicy: when pairs start hole punching.
    @param encryption: protect all traffic (default); clients must match.
    @param identity: the server's long-term L{IdentityKey} (a fresh one if
        not given); clients pinned to its public key refuse any other server.
    @param handshakeTimeout: seconds a new connection has to join.
    @param maxUnauthenticated: connections not yet joined; more are refused
        (L{JoinRefusal.SERVER_FULL}).
    @param relayFramesPerSecond: frames a second each client may have relayed.
    @param relayBytesPerSecond: bytes a second each client may have relayed.
    @param udpBufferSize: bytes of kernel receive and send buffer to ask for
        on the UDP port, so that bursts are not dropped (0: the OS defaults);
        a warning is logged if the OS gives less.
    @param loginTimeout: seconds C{onConnectionRequest} (which may return a
        Deferred) has to answer; a late, failed or raising login refuses the
        client (L{JoinRefusal.LOGIN_TIMEOUT}, L{JoinRefusal.LOGIN_ERROR}).
    @param maxClientOutput: bytes of unsent output held for a client that
        does not read; past it the client is disconnected
        (L{ErrorType.SLOW_CONSUMER}), as it is when its output has not
        drained for C{clientTimeout} seconds.
    @param closeLinger: seconds a closed connection's last output gets before
        the connection is aborted.
    @param receiveBudget: bytes the clients' reliable UDP sessions with the
        server may hold in reassembly buffers together (each also within its
        own C{sessionConfig.maxReceiveBufferBytes}).
    @param backlog: the TCP listen queue length.
    @param recoveryWindow: seconds a client whose connection dropped (reset,
        silent past C{clientTimeout}) stays offline with its HostID, groups
        and unacknowledged reliable output, waiting for it to reconnect and
        resume (C{onClientOffline}, then C{onClientOnline} or, when the
        window runs out, C{onClientLeave}); 0 turns recovery off.
    @param maxOfflineClients: clients that may be offline at once; a
        client dropped past it leaves at once (C{stats.recoveryRefused}).
    @param cluster: a L{Cluster} to join (started and stopped with the
        server): HostIDs are then unique in the whole cluster, and L{send}
        reaches clients and groups of the other servers too.
    @param metrics: a L{ServerMetrics} for this server alone, to serve to
        Prometheus (L{metricsService}); it samples the event loop's lag
        while the server runs.
    """

    def __init__(self, events: INetServerEvent | NetServerEvents | None = None,
                 protocolVersion: uuid.UUID | str | bytes = uuid.UUID(int=0), *,
                 tcpPort: int = 0, udpPort: int = 0, interface: str = "",
                 reactor: Any = None, maxMessageLength: int = DEFAULT_MAX_MESSAGE_LENGTH,
                 clientTimeout: float = DEFAULT_CLIENT_TIMEOUT,
                 allowEmptyGroups: bool = True,
                 hostIDQuietPeriod: float = DEFAULT_QUIET_PERIOD,
                 sessionConfig: SessionConfig = DEFAULT_SESSION_CONFIG,
                 holePunchPolicy: HolePunchPolicy = HolePunchPolicy.JUST_IN_TIME,
                 encryption: bool = True, identity: IdentityKey | None = None,
                 handshakeTimeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                 maxUnauthenticated: int = DEFAULT_MAX_UNAUTHENTICATED,
                 relayFramesPerSecond: float = DEFAULT_RELAY_FRAMES_PER_SECOND,
                 relayBytesPerSecond: float = DEFAULT_RELAY_BYTES_PER_SECOND,
                 udpBufferSize: int = DEFAULT_SERVER_UDP_BUFFER,
                 loginTimeout: float = DEFAULT_LOGIN_TIMEOUT,
                 maxClientOutput: int = DEFAULT_MAX_CLIENT_OUTPUT,
                 closeLinger: float = DEFAULT_CLOSE_LINGER,
                 receiveBudget: int = DEFAULT_RECEIVE_BUDGET,
                 backlog: int = DEFAULT_BACKLOG,
                 recoveryWindow: float = DEFAULT_RECOVERY_WINDOW,
                 maxOfflineClients: int = DEFAULT_MAX_OFFLINE_CLIENTS,
                 metrics: ServerMetrics | None = None,
                 cluster: Cluster | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        if encryption and identity is None:
            identity = IdentityKey.generate()
        self._engine = ServerEngine(
            events if events is not None else NetServerEvents(),
            versionBytes(protocolVersion), reactor, tcpPort=tcpPort, udpPort=udpPort,
            interface=interface, maxMessageLength=maxMessageLength,
            clientTimeout=clientTimeout, allowEmptyGroups=allowEmptyGroups,
            hostIDQuietPeriod=hostIDQuietPeriod, sessionConfig=sessionConfig,
            holePunchPolicy=holePunchPolicy, identity=identity if encryption else None,
            handshakeTimeout=handshakeTimeout, maxUnauthenticated=maxUnauthenticated,
            relayFramesPerSecond=relayFramesPerSecond,
            relayBytesPerSecond=relayBytesPerSecond, udpBufferSize=udpBufferSize,
            loginTimeout=loginTimeout, maxClientOutput=maxClientOutput,
            closeLinger=closeLinger, receiveBudget=receiveBudget, backlog=backlog,
            recoveryWindow=recoveryWindow, maxOfflineClients=maxOfflineClients,
            cluster=cluster)
        self._reactor = reactor
        self._metrics = metrics
        if metrics is not None:
            metrics.attach(self._engine)
        if cluster is not None:
            cluster.attach(self._engine)

    # Service

    def startService(self) -> None:
        """Listen on TCP and UDP; if either cannot be bound, neither stays open."""
        self._engine.listen()
        if self._metrics is not None:
            self._metrics.start(self._reactor)
        service.Service.startService(self)

    def stopService(self) -> defer.Deferred[object]:
        """Close every connection and stop listening; a Deferred fires when done."""
        service.Service.stopService(self)
        self._stopRmi("the server stopped")
        if self._metrics is not None:
            self._metrics.stop()
        return self._engine.stop()

    # Attributes

    @property
    def events(self) -> INetServerEvent | NetServerEvents:
        return self._engine.events

    @property
    def cluster(self) -> Cluster | None:
        return self._engine.cluster

    @property
    def stats(self) -> ServerStats:
        return self._engine.stats

    @property
    def identity(self) -> IdentityKey | None:
        return self._engine.identity

    @property
    def udpSocketBuffers(self) -> SocketBuffers | None:
        return self._engine.udpSocketBuffers

    @property
    def allowEmptyGroups(self) -> bool:
        return self._engine.allowEmptyGroups

    @allowEmptyGroups.setter
    def allowEmptyGroups(self, allowed: bool) -> None:
        self._engine.allowEmptyGroups = allowed

    # The game API: see INetServer for what each does.

    def getTcpAddress(self) -> Address:
        return self._engine.getTcpAddress()

    def getUdpAddress(self) -> Address:
        return self._engine.getUdpAddress()

    def createP2PGroup(self, members: Iterable[int] = (), message: bytes = b"",
                       allowDirectP2P: bool = True) -> int:
        return self._engine.createP2PGroup(members, message, allowDirectP2P)

    def joinP2PGroup(self, member: int, group: int, message: bytes = b"") -> None:
        self._engine.joinP2PGroup(member, group, message)

    def leaveP2PGroup(self, member: int, group: int) -> None:
        self._engine.leaveP2PGroup(member, group)

    def destroyP2PGroup(self, group: int) -> None:
        self._engine.destroyP2PGroup(group)

    def destroyEmptyP2PGroups(self) -> None:
        self._engine.destroyEmptyP2PGroups()

    def getClientHostIDs(self) -> list[int]:
        return self._engine.getClientHostIDs()

    def getClientInfo(self, hostID: int) -> ClientInfo:
        return self._engine.getClientInfo(hostID)

    def getConnectionCount(self) -> int:
        return self._engine.getConnectionCount()

    def getP2PGroups(self) -> list[int]:
        return self._engine.getP2PGroups()

    def getP2PGroupInfo(self, group: int) -> P2PGroupInfo:
        return self._engine.getP2PGroupInfo(group)

    def getP2PConnectionStats(self, group: int) -> P2PConnectionStats:
        return self._engine.getP2PConnectionStats(group)

    def getJoinedP2PGroups(self, client: int) -> frozenset[int]:
        return self._engine.getJoinedP2PGroups(client)

    def send(self, targets: Targets, payload: bytes, reliable: bool = True, *,
             mode: DeliveryMode | None = None, priority: Priority = Priority.MEDIUM,
             channel: int = 0) -> None:
        self._engine.send(targets, payload, deliveryMode(reliable, mode), priority, channel)

    def closeConnection(self, hostID: int) -> None:
        self._engine.closeConnection(hostID)

    def _isGroup(self, hostID: int) -> bool:
        return self._engine._table.hasGroup(hostID)
