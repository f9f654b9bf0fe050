"""The server's engine: what its protocols call, and the state behind L{NetServer}.

The game API lives on the facade (L{proud_twisted.server.netserver.NetServer},
documented by L{INetServer}); the TCP and UDP protocols below talk to the
engine, which decides with the pure group table (L{groups}) and carries out
its effects.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable

from twisted.internet import defer, task
from twisted.logger import Logger

from proud_twisted._crypto.datagrams import CLIENT_DATAGRAM_HEADER, datagramHostID, openDatagram
from proud_twisted._crypto.resume import newNonce, newResumeKey, proofHolds
from proud_twisted._glue.callbacks import EventDispatcher
from proud_twisted._glue.coredriver import TurnEnd
from proud_twisted._glue.memory import returnFreedMemory
from proud_twisted._glue.oncelog import OnceLog
from proud_twisted._glue.sessiondriver import SessionDriver
from proud_twisted._glue.udpbuffers import SocketBuffers, checkedBufferSize, sizeUdpBuffers
from proud_twisted.constants import (
    ErrorType,
    HackKind,
    HolePunchPolicy,
    JoinRefusal,
    ResumeRefusal,
)
from proud_twisted.errors import (
    InvalidGroupOperation,
    MessageTooLong,
    MoveFailed,
    ProtocolError,
    ResumeRefused,
    SendQueueFull,
    UnknownHostID,
)
from proud_twisted.info import (
    ClientInfo,
    ErrorInfo,
    MessageContext,
    P2PConnectionStats,
    P2PGroupInfo,
)
from proud_twisted.rudp import DeliveryMode, MessageReceived, Priority, ReceiveBudget
from proud_twisted.rudp.config import checkedSendOptions
from proud_twisted.server import groups as g
from proud_twisted.server.connection import ServerConnectionFactory
from proud_twisted.server.hostids import HostIDAllocator, HostIDsExhausted
from proud_twisted.server.login import askLogin
from proud_twisted.server.moving import Mover
from proud_twisted.server.ratelimit import RelayLimit
from proud_twisted.server.remote import RemoteMembers
from proud_twisted.server.stats import ServerStats
from proud_twisted.server.udp import ServerDatagramProtocol
from proud_twisted.wire import relay
from proud_twisted.wire.addresses import addressFromWire, addressToWire, plainAddress
from proud_twisted.wire.datagrams import encodeDatagram, encodePong
from proud_twisted.wire.framing import FRAME_HEADROOM
from proud_twisted.wire.messages import (
    POLICY_DIRECT_ALLOWED,
    POLICY_PUNCH_AT_ONCE,
    RTT_UNKNOWN,
    WIRE_VERSION,
    encodeMessage,
)
from proud_twisted.wire.stream import ResumableStream

MIN_READ_HOLD = 0.01
"""Shortest pause in reading from a client over its relay limit."""
MAX_REPORTED_RTT = 60.0
"""The longest round trip a client may report: three times the default
client timeout; a longer one is no figure of a live connection."""
DEPARTED_GRACE = 5.0
"""Seconds after two hosts stop sharing a group during which frames still in
flight between them are dropped quietly rather than reported."""
SWEEPS_PER_CIPHER_RELEASE = 4
"""Every how many sweeps (one a second) the server drops the cipher contexts
of clients that sent and received nothing since the last such sweep: a
context holds about 2.5 KiB, four per client, and an idle client (a
keepalive every 6.7 s, whose answer drops the UDP ones at once) needs them
for a moment now and then. The freed heap then goes back to the OS."""
# A pair's direct-path reports (see ServerEngine._pairs): whether each side
# says it is direct, and whether its failure to punch was counted already.
_DIRECT_A, _DIRECT_B = 1, 2
_BOTH_DIRECT = _DIRECT_A | _DIRECT_B
_FAILED_A, _FAILED_B = 4, 8
PATH_REPORT_COST = 16
"""Bytes of the client's relay budget a path report takes (it also takes
one frame): a report is as small as a relayed frame and costs the server
as much, so a flood of them is a relay flood."""
ONLINE_RESEND_SLACK = 8 * 1024 * 1024
"""Bytes a connected client's unacknowledged reliable output may exceed
C{maxClientOutput} by. A client that reads acknowledges every 32 frames or
64 KiB, and at the latest at the server's next sweep (a second), so it holds
about a second of output; one that stops reading is cut as a slow consumer
once C{maxClientOutput} waits unsent in Twisted, and what the kernel's socket
buffers hold besides (a few MiB on Linux, 6 MiB at most by default) is
unacknowledged too: this slack covers it. Offline, only C{maxClientOutput}
may wait."""
MIN_RESUME_INTERVAL = 1.0
"""Seconds after a resume before the same session may resume again; a
resume sooner is closed unanswered, and the client tries again after its
next pause (0.25 s, then doubling). A resume resends what the client has not
acknowledged, up to C{maxClientOutput} (1 MiB: some 11,000 small frames to
seal, under 0.1 s of the reactor); at most once a second, that is less than
the relaying a client may have done in that second (8 MiB, 10,000 frames)."""
# How a connection may end with its session kept for a resume: it was lost
# (reset, or silent past the client timeout), not closed on purpose.
_RECOVERABLE = frozenset({ErrorType.DISCONNECT_FROM_REMOTE, ErrorType.TIMEOUT})


def _peerAddress(connection):
    """The C{(host, port)} a connection comes from, as log fields give it."""
    peer = connection.transport.getPeer()
    return plainAddress((peer.host, peer.port))


def _pairKey(a: int, b: int) -> int:
    """One int for the pair C{a < b} (HostIDs are 32 bits): a tuple key would
    be another object per pair, and a server keeps tens of thousands."""
    return a << 32 | b


class ServerEngine:
    """One server's state and the protocol hooks; see L{NetServer} for the settings."""

    log = Logger()
    rmi = None
    """The L{proud_twisted.rmi.endpoint.RmiEndpoint}, once anything is attached."""

    def __init__(self, events, protocolVersion: bytes, reactor, *, tcpPort, udpPort,
                 interface, maxMessageLength, clientTimeout, allowEmptyGroups,
                 hostIDQuietPeriod, sessionConfig, holePunchPolicy, identity,
                 handshakeTimeout, maxUnauthenticated, relayFramesPerSecond,
                 relayBytesPerSecond, udpBufferSize, loginTimeout, maxClientOutput,
                 closeLinger, receiveBudget, backlog, recoveryWindow,
                 maxOfflineClients, cluster=None) -> None:
        self.reactor = reactor
        self.events = events
        self.dispatch = EventDispatcher(self.events, self.log)
        self.protocolVersion = protocolVersion
        self.tcpPort = tcpPort
        self.udpPort = udpPort
        self.interface = interface
        self.maxMessageLength = maxMessageLength
        self.maxFrameLength = maxMessageLength + FRAME_HEADROOM
        self.clientTimeout = clientTimeout
        self.sessionConfig = sessionConfig
        self.stats = ServerStats()
        self.holePunchPolicy = holePunchPolicy
        self.identity = identity
        self.handshakeTimeout = handshakeTimeout
        self.maxUnauthenticated = maxUnauthenticated
        if relayFramesPerSecond < 1 or relayBytesPerSecond < self.sessionConfig.mtu:
            raise ValueError("relay limits below 1 frame/s or one datagram's bytes/s "
                             "would block every relayed frame")
        self.relayFramesPerSecond = relayFramesPerSecond
        self.relayBytesPerSecond = relayBytesPerSecond
        self.udpBufferSize = checkedBufferSize(udpBufferSize)
        self.udpSocketBuffers: SocketBuffers | None = None
        if loginTimeout <= 0 or closeLinger < 0 or backlog < 1:
            raise ValueError("need loginTimeout > 0, closeLinger >= 0 and backlog >= 1")
        if maxClientOutput < self.maxFrameLength:
            raise ValueError(f"maxClientOutput {maxClientOutput} is below one frame "
                             f"({self.maxFrameLength} bytes)")
        self.loginTimeout = loginTimeout
        self.maxClientOutput = maxClientOutput
        self.closeLinger = closeLinger
        self.backlog = backlog
        self.receiveBudget = ReceiveBudget(receiveBudget)
        if recoveryWindow < 0 or maxOfflineClients < 0:
            raise ValueError("need recoveryWindow >= 0 and maxOfflineClients >= 0")
        self.recoveryWindow = recoveryWindow
        self.maxOfflineClients = maxOfflineClients
        self._offline = 0           # clients whose session waits for a resume
        self._stopping = False
        self._unauthenticated = 0
        self._waitingForIDs: list = []      # joins admitted, waiting for a HostID block
        # _pairKey(a, b) with a < b -> when they stopped sharing a group (oldest first).
        self._parted = {}
        # _pairKey(a, b) with a < b -> which of the two report a direct path: bit 1 a,
        # bit 2 b. An int, not an object per pair: a garbage collection
        # visits every object, and a server keeps pairs by the tens of thousands.
        self._pairs = {}
        self._directAllowed = {}    # group -> bool
        self._lastPairEpoch = 0
        self._table = g.P2PGroupTable(allowEmptyGroups)
        self.cluster = cluster
        self.remote = RemoteMembers(self, cluster) if cluster is not None else None
        self.mover = Mover(self, cluster) if cluster is not None else None
        self._hostIDs = HostIDAllocator(
            hostIDQuietPeriod, source=cluster.leases if cluster is not None else None)
        self._clients = {}
        self._connections = set()
        self._tcpPort = None
        self._udpPort = None
        self._udp = ServerDatagramProtocol(self)
        # The clients' UDP sessions and TCP output flush from it.
        self.turnEnd = TurnEnd(self.reactor)
        self._sweeper = None
        self._sweeps = 0
        self.onceLog = OnceLog(self.log)

    # Listening

    def listen(self) -> None:
        """Listen on TCP and UDP; if either cannot be bound, neither stays open."""
        self._tcpPort = self.reactor.listenTCP(
            self.tcpPort, ServerConnectionFactory(self), backlog=self.backlog,
            interface=self.interface)
        try:
            self._udpPort = self.reactor.listenUDP(
                self.udpPort, self._udp, interface=self.interface)
        except Exception:
            self._tcpPort.stopListening()
            self._tcpPort = None
            raise
        self.udpSocketBuffers = sizeUdpBuffers(self._udpPort, self.udpBufferSize,
                                               self.log.warn)
        self._sweeper = task.LoopingCall(self._dropSilentClients)
        self._sweeper.clock = self.reactor
        self._sweeper.start(min(1.0, self.clientTimeout / 4), now=False)
        if self.cluster is not None:
            self.cluster.start()
        self.log.info("proud_twisted server listening on TCP {tcp} and UDP {udp}"
                      " (socket buffers {buffers}); {what}",
                      tcp=self.getTcpAddress(), udp=self.getUdpAddress(),
                      buffers=self.udpSocketBuffers or "OS defaults",
                      what=(f"identity {self.identity.publicKey().fingerprint()}"
                            if self.identity else "encryption OFF"))

    def stop(self) -> defer.Deferred:
        """Close every connection and stop listening; a Deferred fires when done."""
        self._stopping = True
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        if self.mover is not None:
            self.mover.stop()
        for connection in list(self._connections):
            connection.close(ErrorType.KICKED)
        for client in list(self._clients.values()):
            if client.offlineTimer is not None:
                self._endOffline(client, ErrorType.KICKED)
        ports = [p for p in (self._tcpPort, self._udpPort) if p is not None]
        self._tcpPort = self._udpPort = None
        stopping = [defer.maybeDeferred(p.stopListening) for p in ports]
        if self.cluster is not None:
            stopping.append(self.cluster.stop())
        return defer.gatherResults(stopping)

    def getTcpAddress(self):
        host = self._tcpPort.getHost()
        return (host.host, host.port)

    def getUdpAddress(self):
        host = self._udpPort.getHost()
        return (host.host, host.port)

    # Settings

    @property
    def allowEmptyGroups(self) -> bool:
        return self._table.allowEmptyGroups

    @allowEmptyGroups.setter
    def allowEmptyGroups(self, allowed: bool) -> None:
        self._table.allowEmptyGroups = allowed

    # Group service

    def createP2PGroup(self, members: Iterable[int] = (), message: bytes = b"",
                       allowDirectP2P: bool = True) -> int:
        members = list(members)
        self._refuseMoving(members)
        groupID = self._hostIDs.allocate(self.reactor.seconds())
        adopted = self._adoptRemote(members)
        try:
            effects = self._table.create(groupID, members, message)
        except Exception:
            self._hostIDs.release(groupID, self.reactor.seconds())
            self._dropAdopted(adopted)
            raise
        self._directAllowed[groupID] = allowDirectP2P
        members = sorted(self._table.membersOf(groupID))
        self.log.info("P2P group {groupID} created with members {members}",
                      proud_event="group_created", groupID=groupID, members=members)
        for member in members:
            self._memberJoined(member, groupID)
        self._apply(effects, groupID)
        return groupID

    def joinP2PGroup(self, member: int, group: int, message: bytes = b"") -> None:
        self._refuseMoving([member])
        adopted = self._adoptRemote([member])
        try:
            effects = self._table.join(member, group, message)
        except Exception:
            self._dropAdopted(adopted)
            raise
        self._memberJoined(member, group)
        self._apply(effects, group)

    def _refuseMoving(self, members) -> None:
        """A client being moved away joins no group here (it left them all)."""
        if self.mover is not None:
            for member in members:
                if self.mover.isLeaving(member):
                    raise InvalidGroupOperation(
                        f"client {member} is being moved to another server")

    def leaveGroupsForMove(self, hostID: int) -> None:
        """Client C{hostID} is about to be told to move: it leaves every
        group, here (its peers hear it at once) and on other servers (their
        owners hear it is gone); the client leaves them on its side when it
        reads C{MOVE}, which follows these notices on its stream."""
        self._leaveAllGroups(hostID, "moved")

    def _leaveAllGroups(self, hostID: int, reason: str) -> None:
        """Take client C{hostID} out of every group, here and elsewhere."""
        groups = sorted(self._table.groupsOf(hostID))
        effects = self._table.leaveAll(hostID)
        for group in groups:
            self._memberLeft(hostID, group, reason)
        self._apply(effects)
        if self.remote is not None:
            self.remote.clientGone(hostID)

    def _adoptRemote(self, members) -> list:
        """Those of C{members} that are clients of other servers of the
        cluster, put into the group table now."""
        if self.remote is None:
            return []
        return [m for m in members if m not in self._clients and self.remote.adopt(m)]

    def _dropAdopted(self, adopted) -> None:
        for hostID in adopted:
            self.remote.drop(hostID)

    def leaveP2PGroup(self, member: int, group: int) -> None:
        effects = self._table.leave(member, group)
        self._memberLeft(member, group, "left")
        self._apply(effects)

    def destroyP2PGroup(self, group: int) -> None:
        members = sorted(self._table.membersOf(group))
        effects = self._table.destroy(group)
        for member in members:
            self._memberLeft(member, group, "group_destroyed")
        self._apply(effects)

    def _memberJoined(self, member: int, group: int) -> None:
        self.stats.groupJoins += 1
        self.log.info("client {hostID} joined P2P group {groupID}",
                      proud_event="group_member_join", hostID=member, groupID=group)

    def _memberLeft(self, member: int, group: int, reason: str) -> None:
        self.stats.groupLeaves += 1
        self.log.info("client {hostID} left P2P group {groupID}: {reason}",
                      proud_event="group_member_leave", hostID=member, groupID=group,
                      reason=reason)

    def destroyEmptyP2PGroups(self) -> None:
        self._apply(self._table.destroyEmpty())

    # Queries

    def getClientHostIDs(self) -> list:
        return sorted(self._clients)

    def getClientInfo(self, hostID: int) -> ClientInfo:
        return self._info(self._client(hostID))

    def getConnectionCount(self) -> int:
        return len(self._connections)

    def getP2PGroups(self) -> list:
        return self._table.groups()

    def getP2PGroupInfo(self, group: int) -> P2PGroupInfo:
        return P2PGroupInfo(group, self._table.membersOf(group))

    def getP2PConnectionStats(self, group: int) -> P2PConnectionStats:
        members = sorted(self._table.membersOf(group))
        total = direct = 0
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                total += 1
                if self._pairs.get(_pairKey(a, b), 0) & _BOTH_DIRECT == _BOTH_DIRECT:
                    direct += 1
        return P2PConnectionStats(total, direct)

    def getJoinedP2PGroups(self, client: int) -> frozenset:
        return self._table.groupsOf(client)

    def gauges(self) -> dict[str, int]:
        """What exists now, for metrics read at scrape time (a pass over the
        pairs and clients, nothing on any message's path)."""
        pairs = list(self._pairs.values())
        return {"clients": len(self._clients), "connections": len(self._connections),
                "groups": len(self._table.groups()), "pairs": len(pairs),
                "directPairs": sum(1 for r in pairs if r & _BOTH_DIRECT == _BOTH_DIRECT),
                "readingHeld": sum(1 for c in self._clients.values() if c.readingHeld)}

    def clientRoundTrips(self) -> list[float]:
        """The round trip of each joined client that has reported one, in
        seconds (L{ClientInfo.rtt})."""
        return [c.rtt for c in self._clients.values() if c.rtt is not None]

    # Sending

    def send(self, targets, payload: bytes, mode: DeliveryMode, priority: Priority,
             channel: int) -> None:
        """Reliable messages go over TCP, in order with the server's group
        notices (as a client's reliable messages to the server do); the
        others through the client's reliable-UDP session with the server,
        with their priority and channel, while its UDP works (else over TCP,
        dropped while the client does not read)."""
        if len(payload) > self.maxMessageLength:
            raise MessageTooLong(f"{len(payload)} bytes exceed {self.maxMessageLength}")
        mode, priority = checkedSendOptions(mode, priority, channel)
        reliable = mode is DeliveryMode.RELIABLE
        remote = []
        local = self._expandTargets(targets, remote if self.cluster is not None else None)
        if remote:
            self.cluster.route(remote, payload, mode, priority, channel)
        tcpBody = None
        for client in local:
            if reliable or client.udpAddress is None:
                if tcpBody is None:
                    tcpBody = relay.encodeTcpUserMessage(
                        relay.FLAG_RELIABLE if reliable else 0, payload)
                client.sendBody(tcpBody, not reliable)
            else:
                try:
                    self._session(client).send(payload, mode, priority, channel)
                except SendQueueFull:
                    self.stats.outputDropped += 1       # unreliable: may be lost

    def moveClient(self, hostID: int, serverID: str, ticket: bytes) -> defer.Deferred:
        if self.mover is None:
            return defer.fail(MoveFailed("moving a client needs a cluster"))
        return self.mover.moveClient(hostID, serverID, ticket)

    def releaseHostID(self, hostID: int) -> None:
        self._hostIDs.release(hostID, self.reactor.seconds())

    def closeConnection(self, hostID: int) -> None:
        client = self._client(hostID)
        if client.offlineTimer is not None:
            self._endOffline(client, ErrorType.KICKED)
        else:
            client.close(ErrorType.KICKED)

    # Called by the cluster

    def holds(self, hostID: int) -> bool:
        """Whether C{hostID} is a client or group of this server."""
        return hostID in self._clients or self._table.hasGroup(hostID)

    def _forwarded(self, hostID: int) -> bool:
        """Whether sends to C{hostID} go to the server it moves or moved to."""
        return self.mover is not None and hostID in self.cluster.movedTo

    def load(self) -> tuple:
        """C{(clients, groups)} here, for the cluster's entry."""
        return len(self._clients), len(self._table.groups())

    def deliverRouted(self, targets, payload: bytes, mode: DeliveryMode,
                      priority: Priority, channel: int) -> int:
        """Send what another server's C{send} routed here to those of
        C{targets} that are still here; the number that were not."""
        mover = self.mover
        if mover is not None:
            for t in [t for t in targets if t in mover.arrivals]:
                mover.hold(t, payload, mode, priority, channel)
                targets = [x for x in targets if x != t]
        here = [t for t in targets if self.holds(t) or self._forwarded(t)]
        if here:
            self.send(here, payload, mode, priority, channel)
        return len(targets) - len(here)

    # Called by the protocols

    def connectionOpened(self, connection) -> None:
        self._connections.add(connection)
        if self._unauthenticated >= self.maxUnauthenticated:
            # Told in the clear (no keys yet), so that the client fails at once.
            self.stats.unauthenticatedRefused += 1
            self.refuse(connection, JoinRefusal.SERVER_FULL, b"",
                         f"more than {self.maxUnauthenticated} connections not yet joined")
            return
        self._unauthenticated += 1
        connection.waitingToJoin = True
        connection.joinDeadline = self.reactor.seconds() + self.handshakeTimeout

    def _joinedOrGone(self, connection) -> None:
        if connection.waitingToJoin:
            connection.waitingToJoin = False
            self._unauthenticated -= 1

    def connectionClosing(self, connection) -> None:
        """The connection is closing: its client leaves every table now."""
        login, connection.login = connection.login, None
        if login is not None:
            login.cancel()
        if (self._clients.get(connection.hostID) is connection
                and connection.offlineTimer is None):
            self._leave(connection)

    def _leave(self, connection) -> None:
        """The client of C{connection} leaves the server for good."""
        hostID = connection.hostID
        connection.stream = None
        info = self._info(connection)
        del self._clients[hostID]
        if connection.udpSession is not None:
            connection.udpSession.close()
        self._leaveAllGroups(hostID, "client_left")
        self._table.removeClient(hostID)
        if self.mover is None or not self.mover.keepsHostID(hostID):
            self._hostIDs.release(hostID, self.reactor.seconds())
        if self.mover is not None:
            self.mover.leftHere(hostID)
        self.stats.clientsLeft += 1
        reason, comment = connection.leaveReason, connection.leaveComment
        if self._forwarded(hostID):
            reason, comment = ErrorType.MOVED, self.cluster.movedTo[hostID].encode()
        self.log.info("client {hostID} left: {reason} ({comment!r})",
                      proud_event="client_leave", hostID=hostID, reason=reason.name,
                      comment=comment)
        self.dispatch("onClientLeave", info, reason, comment)

    def connectionClosed(self, connection) -> None:
        self._connections.discard(connection)
        self._joinedOrGone(connection)
        connection.closing = True
        if self._keepsSession(connection):
            self._goOffline(connection)
        else:
            self.connectionClosing(connection)

    # Connection recovery

    def _keepsSession(self, connection) -> bool:
        """Whether the lost C{connection}'s client goes offline (its session
        waiting for a resume) rather than leaving."""
        if (connection.stream is None or connection.offlineTimer is not None
                or self._forwarded(connection.hostID) or self._stopping
                or connection.leaveReason not in _RECOVERABLE
                or self._clients.get(connection.hostID) is not connection):
            return False
        stream = connection.stream
        if stream.unacknowledgedBytes > self.maxClientOutput:
            self.stats.resendOverflows += 1
            self.onceLog.warn(("overflow", connection.hostID), "client {hostID} left at "
                              "once: {size} bytes unacknowledged, more than an offline "
                              "client may hold", proud_event="recovery_overflow",
                              hostID=connection.hostID, size=stream.unacknowledgedBytes)
            return False
        if self._offline >= self.maxOfflineClients:
            self.stats.recoveryRefused += 1
            self.onceLog.warn(("offline-full",), "client {hostID} left at once: "
                              "{limit} clients offline already (maxOfflineClients; "
                              "later ones are counted in stats.recoveryRefused)",
                              proud_event="recovery_refused", hostID=connection.hostID,
                              limit=self.maxOfflineClients)
            return False
        return True

    def _goOffline(self, connection) -> None:
        """Keep the session of C{connection} for C{recoveryWindow} seconds."""
        self._offline += 1
        self.stats.clientsOffline += 1
        connection.stream.maxUnacknowledged = self.maxClientOutput
        self._dropUdp(connection)
        connection.offlineTimer = self.reactor.callLater(
            self.recoveryWindow, self._endOffline, connection, None)
        self.log.info("client {hostID} offline ({reason}); its session waits "
                      "{window} s for a resume", proud_event="client_offline",
                      hostID=connection.hostID, reason=connection.leaveReason.name,
                      window=self.recoveryWindow)
        self._tellPeers(connection.hostID, "MEMBER_OFFLINE")
        self.dispatch("onClientOffline", self._info(connection))

    def _dropUdp(self, connection) -> None:
        """Forget the UDP path of C{connection}, which lost its client: its
        reliable-UDP session sends nothing more and gives its share of the
        receive budget back."""
        connection.udpAddress = connection.udpChallenge = None
        if connection.udpSession is not None:
            connection.udpSession.close()
            connection.udpSession = None

    def _endOffline(self, connection, reason: ErrorType | None) -> None:
        """The offline client of C{connection} leaves for good: its window ran
        out (C{reason} None: it leaves for why it went offline), or C{reason}."""
        timer, connection.offlineTimer = connection.offlineTimer, None
        if timer is None:
            return
        if timer.active():
            timer.cancel()
        else:
            self.stats.recoveryExpired += 1
        self._offline -= 1
        if reason is not None:
            connection.leaveReason = reason
        if self._clients.get(connection.hostID) is connection:
            self._leave(connection)

    def _tellPeers(self, hostID: int, kind: str) -> None:
        body = encodeMessage(kind, memberID=hostID)
        for peerID in self._table.peersOf(hostID):
            peer = self._clients.get(peerID)
            if peer is not None:
                peer.sendBody(body)
        if self.remote is not None:
            self.remote.tellPeers(hostID, kind)

    def resendOverflow(self, connection, why: str) -> None:
        """The client's unacknowledged reliable output outgrew its bound:
        its session ends (now if online, after this turn if offline)."""
        self.stats.resendOverflows += 1
        size = connection.stream.unacknowledgedBytes
        connection.stream = None        # keeps nothing more, and cannot resume
        if connection.offlineTimer is None:
            connection.cutSlowConsumer(why)
            return
        self.onceLog.warn(("overflow", connection.hostID), "offline client {hostID} "
                          "leaves: {why}", proud_event="resend_overflow",
                          hostID=connection.hostID, size=size, why=why)
        self.reactor.callLater(0, self._endOffline, connection, ErrorType.SLOW_CONSUMER)

    def resumeRequested(self, connection, fields) -> None:
        """A new connection asks to resume a session: challenge it."""
        if fields.wireVersion != WIRE_VERSION:
            self.refuse(connection, JoinRefusal.VERSION_MISMATCH, b"",
                        "protocol version mismatch")
            return
        nonce = newNonce()
        connection.resumeNonce = (fields.hostID, nonce)
        connection.sendMessage("RESUME_CHALLENGE", nonce=nonce)

    def resume(self, connection, fields, nonce: bytes) -> None:
        """The answer to the challenge C{nonce}: resume, or refuse and close."""
        try:
            session = self.admitResume(fields.hostID, nonce, fields.proof)
            if self.reactor.seconds() < session.resumedAt + MIN_RESUME_INTERVAL:
                self.stats.resumesRefused += 1
                connection.abort(ErrorType.CONNECTION_REFUSED, f"host {fields.hostID} "
                                 f"resumed less than {MIN_RESUME_INTERVAL} s ago")
                return
            resend = session.stream.resendAfter(fields.received)    # ProtocolError if it lies
            if session.stream.unacknowledgedBytes > self.maxClientOutput:
                # A session taken over while connected goes offline for a
                # moment: the offline bound holds, else a client that never
                # acknowledges has all of it sealed and written per resume.
                self.resendOverflow(session, f"{session.stream.unacknowledgedBytes} bytes "
                                    "unacknowledged at a resume, more than an offline "
                                    "client may hold")
                raise ResumeRefused(ResumeRefusal.UNKNOWN_SESSION,
                                    f"the session of host {fields.hostID} outgrew its "
                                    "resend bound and ended")
        except ResumeRefused as e:
            self.stats.resumesRefused += 1
            address = _peerAddress(connection)
            self.onceLog.warn(("resume", e.reason, address[0]),
                              "refused a resume from {address}: {why} (later ones are "
                              "counted in stats.resumesRefused)", proud_event="resume_refused",
                              address=address, hostID=fields.hostID,
                              reason=e.reason.name, why=str(e))
            connection.sendMessage("RESUME_REFUSED", reason=int(e.reason))
            connection.close(ErrorType.CONNECTION_REFUSED)
            return
        self._resumeOn(connection, session, resend)

    def admitResume(self, hostID: int, nonce: bytes, proof: bytes):
        """The admission step of a resume: the session (a joined or offline
        client's connection) that C{proof} answers the server's C{nonce} for,
        or L{ResumeRefused}. Changes nothing."""
        session = self._clients.get(hostID)
        if session is None or session.stream is None or (
                # Cut for cause, its connection not gone yet: it ends.
                session.closing and session.offlineTimer is None
                and session.leaveReason not in _RECOVERABLE):
            raise ResumeRefused(ResumeRefusal.UNKNOWN_SESSION,
                                f"no session of host {hostID} to resume")
        if not proofHolds(session.resumeKey, hostID, nonce, proof):
            raise ResumeRefused(ResumeRefusal.BAD_PROOF,
                                f"wrong proof for the session of host {hostID}")
        return session

    def _resumeOn(self, connection, session, resend: list) -> None:
        """Move C{session} onto the new C{connection} and send it again what
        the client has not counted (C{resend}), then what is new."""
        hostID = session.hostID
        timer, session.offlineTimer = session.offlineTimer, None
        if timer is not None:
            timer.cancel()
            self._offline -= 1
        else:
            # Still joined on a connection the client gave up (its address
            # changed): that one goes, and the client is offline a moment.
            self.stats.clientsOffline += 1
            session.closing = True
            session.outgoing = None
            session.transport.abortConnection()
            self._dropUdp(session)
            self._tellPeers(hostID, "MEMBER_OFFLINE")
            self.dispatch("onClientOffline", self._info(session))
        self._joinedOrGone(connection)
        connection.adopt(session)
        connection.stream.maxUnacknowledged = self.maxClientOutput + ONLINE_RESEND_SLACK
        self._clients[hostID] = connection
        connection.lastHeard = connection.resumedAt = self.reactor.seconds()
        connection.sendMessage("RESUME_ACCEPTED", received=connection.stream.received)
        for body in resend:
            connection.writeBody(body)
        self.stats.clientsResumed += 1
        self.log.info("client {hostID} resumed its session from {address}",
                      proud_event="client_resumed", hostID=hostID,
                      address=_peerAddress(connection))
        self._tellPeers(hostID, "MEMBER_ONLINE")
        self.dispatch("onClientOnline", self._info(connection))

    def moveArrived(self, connection, fields) -> None:
        """A client moved here shows its token: admit it under its HostID,
        or refuse and close."""
        if fields.wireVersion != WIRE_VERSION:
            self.refuse(connection, JoinRefusal.VERSION_MISMATCH, b"",
                        "protocol version mismatch")
            return
        hostID = fields.hostID
        try:
            if self.mover is None or hostID in self._clients:
                raise ResumeRefused(ResumeRefusal.BAD_MOVE_TOKEN,
                                    f"no move of host {hostID} expected")
            arrival = self.mover.admit(hostID, fields.token)
        except ResumeRefused as e:
            self.stats.movesRefused += 1
            address = _peerAddress(connection)
            self.onceLog.warn(("move", address[0]), "refused a move arrival from {address}: "
                              "{why} (later ones are counted in stats.movesRefused)",
                              proud_event="move_refused", address=address, hostID=hostID,
                              why=str(e))
            connection.sendMessage("RESUME_REFUSED", reason=int(e.reason))
            connection.close(ErrorType.CONNECTION_REFUSED)
            return
        self._joinedOrGone(connection)
        connection.hostID = hostID
        connection.udpToken = os.urandom(16)
        connection.relayLimit = RelayLimit(self.relayFramesPerSecond, self.relayBytesPerSecond,
                                           self.reactor.seconds())
        self._clients[hostID] = connection
        # If in a group of ours as a client of its source: the source has
        # taken it out of every group (its word may come after the client).
        self._apply(self.remote.drop(hostID))
        self._table.addClient(hostID)
        secret = b""
        if connection.resumeKey is None:            # no handshake to derive it from
            connection.resumeKey = secret = newResumeKey()
        connection.sendMessage("MOVE_ACCEPTED", udpToken=connection.udpToken,
                               udpPort=self.getUdpAddress()[1],
                               clientTimeoutMs=int(self.clientTimeout * 1000),
                               resumeSecret=secret)
        connection.stream = ResumableStream(self.maxClientOutput + ONLINE_RESEND_SLACK)
        self.stats.clientsMovedIn += 1
        self.log.info("client {hostID} arrived from {source}", proud_event="client_arrived",
                      hostID=hostID, source=arrival.source)
        self.mover.welcomed(hostID, arrival)
        self.dispatch("onClientArrived", self._info(connection), arrival.ticket)

    def hello(self, connection, fields) -> None:
        peer = connection.transport.getPeer()
        address = plainAddress((peer.host, peer.port))
        if fields.wireVersion != WIRE_VERSION or fields.protocolVersion != self.protocolVersion:
            self.refuse(connection, JoinRefusal.VERSION_MISMATCH, b"",
                         "protocol version mismatch")
            return
        mismatch = None if self.rmi is None else self.rmi.mismatchWith(fields.rmiFingerprints)
        if mismatch is not None:
            self.refuse(connection, JoinRefusal.RMI_MISMATCH, mismatch.reply(), str(mismatch))
            return
        connection.joinDeadline = float("inf")     # the login timeout bounds it now
        login = connection.login = askLogin(self.events, address, fields.userData,
                                            self.loginTimeout, self.reactor)
        login.addCallbacks(self._loginAnswered, self._loginFailed,
                           callbackArgs=(connection, address, fields),
                           errbackArgs=(connection, address))

    def _loginAnswered(self, answer, connection, address, fields) -> None:
        connection.login = None
        accepted, reply = answer
        if not accepted:
            self.refuse(connection, JoinRefusal.REFUSED_BY_APPLICATION, reply,
                         "refused by onConnectionRequest")
            return
        self._admit(connection, address, fields, reply)

    def _loginFailed(self, failure, connection, address) -> None:
        """Fail closed: a login check that raised, failed or timed out refuses."""
        if connection.login is None and connection.closing:
            return                      # the connection went first; nothing to answer
        connection.login = None
        if failure.check(defer.TimeoutError):
            self.stats.loginTimeouts += 1
            self.refuse(connection, JoinRefusal.LOGIN_TIMEOUT, b"",
                         f"onConnectionRequest did not answer within {self.loginTimeout} s")
            return
        self.stats.loginErrors += 1
        if self.onceLog.warn(("login", failure.type), "the login check for {address} "
                             "failed (refused; later failures of this kind are only "
                             "counted in stats.loginErrors):\n{traceback}",
                             proud_event="login_failed", address=address,
                             error=failure.getErrorMessage(),
                             traceback=failure.getTraceback()):
            self.dispatch("onException", failure)
        self.refuse(connection, JoinRefusal.LOGIN_ERROR, b"",
                     f"onConnectionRequest failed: {failure.getErrorMessage()}")

    def _admit(self, connection, address, fields, reply: bytes) -> None:
        try:
            hostID = self._hostIDs.allocate(self.reactor.seconds())
        except HostIDsExhausted:
            if self.cluster is not None and self.cluster.leaseNow():
                # A join storm used up the leased blocks before the next one
                # came: wait for it (within the join deadline; the limit on
                # connections not yet joined bounds how many wait).
                connection.joinDeadline = self.reactor.seconds() + self.handshakeTimeout
                self._waitingForIDs.append((connection, address, fields, reply))
                return
            # A cluster server that cannot lease a block (Redis unreachable).
            self._joinedOrGone(connection)
            self.refuse(connection, JoinRefusal.SERVER_FULL, b"", "no HostID to give")
            return
        self._joinedOrGone(connection)
        connection.hostID = hostID
        connection.udpToken = os.urandom(16)
        connection.userData = fields.userData
        connection.relayLimit = RelayLimit(self.relayFramesPerSecond, self.relayBytesPerSecond,
                                           self.reactor.seconds())
        self._clients[hostID] = connection
        self._table.addClient(hostID)
        if self.recoveryWindow > 0:
            # First, so that the client counts from JOIN_ACCEPTED on as we do.
            secret = b""
            if connection.resumeKey is None:        # no handshake to derive it from
                connection.resumeKey = secret = newResumeKey()
            connection.sendMessage("RECOVERY", windowMs=int(self.recoveryWindow * 1000),
                                   resumeSecret=secret)
        connection.sendMessage(
            "JOIN_ACCEPTED", hostID=hostID, udpToken=connection.udpToken,
            udpPort=self.getUdpAddress()[1],
            clientTimeoutMs=int(self.clientTimeout * 1000), reply=reply)
        if self.recoveryWindow > 0:
            connection.stream = ResumableStream(self.maxClientOutput + ONLINE_RESEND_SLACK)
        self.stats.clientsJoined += 1
        self.log.info("client {hostID} joined from {address}", proud_event="client_join",
                      hostID=hostID, address=address)
        self.dispatch("onClientJoin", self._info(connection))

    def leaseSettled(self) -> None:
        """A HostID block was leased, or could not be: the joins waiting for
        one are admitted now (or wait for the next, or are refused)."""
        waiting, self._waitingForIDs = self._waitingForIDs, []
        for connection, address, fields, reply in waiting:
            if connection in self._connections and connection.waitingToJoin \
                    and not connection.closing:
                self._admit(connection, address, fields, reply)

    def memberJoinAcknowledged(self, connection, ackID: int) -> None:
        if self.remote is not None and self.remote.acknowledged(connection.hostID, ackID):
            return                      # a group of another server's
        self._apply(self._table.acknowledge(connection.hostID, ackID))

    def lanAddressReported(self, connection, address) -> None:
        connection.lanAddress = addressFromWire(address)
        self._announceAddresses(connection)

    def userMessage(self, connection, flags: int, payload: bytes) -> None:
        if flags & relay.FLAG_SESSION:
            try:
                self._session(connection).receiveDatagram(payload)
            except ProtocolError as e:
                self.malformedDatagram(connection.udpAddress, e)
            return
        context = MessageContext(connection.hostID, bool(flags & relay.FLAG_RELIABLE))
        self.deliverUserMessage(connection.hostID, payload, context)

    def deliverUserMessage(self, sender: int, payload: bytes, context) -> None:
        """An RMI message goes to the attached RMI endpoint, any other to
        C{onReceiveUserMessage}."""
        rmi = self.rmi
        if rmi is None or not rmi.receive(sender, payload, context):
            self.dispatch("onReceiveUserMessage", sender, payload, context)

    def relay(self, sender, targets, flags: int, payload: bytes) -> None:
        """Forward C{payload} from C{sender} to each target it shares a group with."""
        if not self._tooManyTargets(sender, len(targets)):
            self._forward(sender, flags, [(target, payload) for target in set(targets)])

    def relayBundle(self, sender, flags: int, entries) -> None:
        """Forward each C{(target, payload)} whose target shares a group with C{sender}.

        Reliable messages go over TCP, the rest over UDP where the target's
        UDP works; one encoding of a payload serves every target. Every
        target, refused or not, costs the sender a frame and the payload's
        bytes of its relay limit.
        """
        if not self._tooManyTargets(sender, len(entries)):
            self._forward(sender, flags, entries)

    def _forward(self, sender, flags: int, entries) -> None:
        """L{relayBundle} once the number of entries is known to be allowed."""
        senderID = sender.hostID
        self.stats.relayRequests += 1
        refused = 0
        limit = sender.relayLimit
        now = self.reactor.seconds()
        tcpFrames = {}
        remote: dict[str, list] | None = None     # home -> frames for its clients
        for targetID, payload in entries:
            if not limit.allow(len(payload), now):
                self._relayFlood(sender, limit.wait(len(payload), now))
                refused = 0         # the rest would be refused too: the flood reports it
                break
            target = self._clients.get(targetID)
            if target is None or not self._table.shareGroup(senderID, targetID):
                # A pair of a group of another server's, or with a client of one?
                home = (self.remote.peerHome(senderID, targetID) if self.remote is not None
                        else None)
                if home is None:
                    if not self._recentlyParted(senderID, targetID, now):
                        refused += 1
                    continue
                if target is None:
                    # Sent together once all are known (a datagram for many).
                    if remote is None:
                        remote = {}
                    remote.setdefault(home, []).append((targetID, payload))
                    self.stats.framesRelayed += 1
                    self.stats.relayBytes += len(payload)
                    continue
            self.deliverRelayed(senderID, target, flags, payload, tcpFrames)
            self.stats.framesRelayed += 1
            self.stats.relayBytes += len(payload)
        if remote is not None:
            for home, frames in remote.items():
                self.remote.forward(home, senderID, flags, frames)
        if refused:
            self._relayRefused(sender, refused, now)

    def deliverRelayed(self, senderID: int, target, flags: int, payload: bytes,
                       tcpFrames=None) -> None:
        """Hand C{target} a frame relayed from C{senderID}: reliable ones over
        TCP (one encoding per payload in C{tcpFrames}), the rest over UDP
        where the target's UDP works."""
        reliable = flags & relay.FLAG_RELIABLE
        if reliable or target.udpAddress is None:
            body = tcpFrames.get(id(payload)) if tcpFrames is not None else None
            if body is None:
                body = relay.encodeTcpRelayed(senderID, flags, payload)
                if tcpFrames is not None:
                    tcpFrames[id(payload)] = body
            target.sendBody(body, not reliable)
        elif flags & relay.FLAG_SESSION:
            # Sealed end to end by the pair: forwarded without opening or re-sealing.
            self.sendUdp(relay.encodeUdpPeerFrame(senderID, flags, payload),
                         target.udpAddress)
        else:
            target.sendDatagram(relay.encodeUdpRelayed(senderID, flags, payload))

    def _tooManyTargets(self, sender, count: int) -> bool:
        if count <= relay.MAX_RELAY_TARGETS:
            return False
        self.stats.relayRejected += count
        error = ProtocolError(f"a relay request for {count} targets (at most "
                              f"{relay.MAX_RELAY_TARGETS})")
        sender.protocolError(error)
        return True

    def pairParted(self, a: int, b: int) -> None:
        """C{a} and C{b} no longer share a group (here, or in a group of
        another server's): frames between them in flight are dropped
        quietly for L{DEPARTED_GRACE}."""
        key = _pairKey(a, b) if a < b else _pairKey(b, a)
        self._parted.pop(key, None)     # keep oldest first
        self._parted[key] = self.reactor.seconds()

    def _recentlyParted(self, a: int, b: int, now: float) -> bool:
        """Whether C{a} and C{b} shared a group until moments ago (counted)."""
        parted = self._parted.get(_pairKey(a, b) if a < b else _pairKey(b, a))
        if parted is None or now - parted > DEPARTED_GRACE:
            return False
        self.stats.relayToDeparted += 1
        return True

    def udpHello(self, hostID: int, token: bytes, addr, size: int) -> None:
        """An authentic UDP_HELLO of C{size} bytes from C{addr}.

        The client's UDP address it is already: acknowledged. A new one is
        only challenged, with one datagram no larger than the hello: the
        source of a datagram can be forged, so the server sends a new address
        nothing more until the challenge comes back from it.
        """
        client = self._clients.get(hostID)
        if client is None or not hmac.compare_digest(client.udpToken, token):
            self._spoofed(hostID, addr)
            return
        if client.udpAddress == addr:
            client.lastHeard = self.reactor.seconds()
            self._acknowledgeUdp(client)
            return
        pending = client.udpChallenge
        if pending is None or pending[0] != addr:
            pending = client.udpChallenge = (addr, os.urandom(16))
        challenge = client.sealedDatagram(encodeDatagram("UDP_CHALLENGE",
                                                         challenge=pending[1]))
        if len(challenge) > size:
            self.stats.amplificationRefused += 1
            return
        self.stats.udpChallenges += 1
        self.sendUdp(challenge, addr)

    def udpChallengeAnswered(self, hostID: int, challenge: bytes, addr) -> None:
        """C{addr} answered the challenge sent there: it is the client's UDP address."""
        client = self._clients.get(hostID)
        pending = client.udpChallenge if client is not None else None
        if (pending is None or pending[0] != addr
                or not hmac.compare_digest(pending[1], challenge)):
            self._spoofed(hostID, addr)
            return
        client.udpChallenge = None
        client.lastHeard = self.reactor.seconds()
        client.udpAddress = addr
        self._acknowledgeUdp(client)
        self._announceAddresses(client)

    def _acknowledgeUdp(self, client) -> None:
        """Tell the client the UDP address the server now knows it by."""
        client.sendDatagram(encodeDatagram("UDP_HELLO_ACK",
                                           address=addressToWire(client.udpAddress)))

    def pathReported(self, connection, peerID: int, direct: bool) -> None:
        """A client says whether its path to C{peerID} is direct (statistics).

        Only a change counts and is logged: a path that became direct, a
        direct path lost, and a side's first failure to punch since it was
        last direct. Each report takes from the client's relay budget.
        """
        limit = connection.relayLimit
        now = self.reactor.seconds()
        if limit is not None and not limit.allow(PATH_REPORT_COST, now):
            self._relayFlood(connection, limit.wait(PATH_REPORT_COST, now))
            return
        if not self.recordPath(connection.hostID, peerID, direct) and self.remote is not None:
            self.remote.pathReported(connection.hostID, peerID, direct)

    def recordPath(self, hostID: int, peerID: int, direct: bool) -> bool:
        """Client C{hostID}'s report of its path to C{peerID}, counted if
        this server introduced the pair (whether it did)."""
        a, b = sorted((hostID, peerID))
        key = _pairKey(a, b)
        reports = self._pairs.get(key)
        if reports is None:
            return False
        bit, failed = (_DIRECT_A, _FAILED_A) if hostID == a else (_DIRECT_B, _FAILED_B)
        if direct:
            outcome = None if reports & bit else "punch_success"
            self._pairs[key] = (reports | bit) & ~failed
        elif reports & bit:
            outcome = "direct_lost"
            self._pairs[key] = reports & ~bit
        else:
            outcome = None if reports & failed else "punch_failure"
            self._pairs[key] = reports | failed
        if outcome is None:
            return True
        if outcome == "punch_success":
            self.stats.punchSuccesses += 1
        elif outcome == "direct_lost":
            self.stats.directPathsLost += 1
        else:
            self.stats.punchFailures += 1
        self.log.info("client {hostID} reports its path to {peerID} {path}: {outcome}",
                      proud_event="p2p_path", hostID=hostID, peerID=peerID,
                      path="direct" if direct else "relayed", outcome=outcome)
        return True

    def udpLost(self, connection) -> None:
        """The client's UDP path stopped working: relay to it over TCP until it is back."""
        connection.udpAddress = None

    def keepalive(self, client, echo: bytes, rtt: float) -> None:
        """A UDP keepalive: note the round trip it reports, and answer with
        the server's clock (no longer than the ping: nothing to amplify)."""
        self.rttReported(client, rtt)
        client.answerKeepalive(encodePong(echo, self.reactor.seconds()))

    def rttReported(self, client, rtt: float) -> None:
        """A keepalive's figure of the client's round trip to the server."""
        if 0.0 <= rtt <= MAX_REPORTED_RTT:
            client.rtt = rtt
        elif rtt != RTT_UNKNOWN:
            self.stats.rttReportsRejected += 1
            self.onceLog.warn(("rtt", client.hostID), "client {hostID} reported a round "
                              "trip of {rtt!r} s (ignored; later ones are counted in "
                              "stats.rttReportsRejected)", proud_event="rtt_report_rejected",
                              hostID=client.hostID, rtt=rtt)

    def verifiedUdpClient(self, hostID: int, addr):
        """The client C{hostID} if C{addr} is its confirmed UDP address, else C{None}."""
        client = self._clients.get(hostID)
        if client is None or client.udpAddress != addr:
            self._spoofed(hostID, addr)
            return None
        client.lastHeard = self.reactor.seconds()
        return client

    def sendUdp(self, data: bytes, addr) -> None:
        self._udp.send(data, addr)

    def openDatagram(self, data: bytes, addr):
        """Authenticate a client datagram; the opened datagram, or None if dropped."""
        if self.identity is None:
            return data
        hostID = datagramHostID(data)
        client = self._clients.get(hostID)
        if client is None or client.udpChannel is None:
            self._spoofed(hostID, addr)
            return None
        try:
            return openDatagram(client.udpChannel, data, CLIENT_DATAGRAM_HEADER)
        except ProtocolError:
            # Forged, damaged or replayed: whoever sent it, it was not this client.
            self._spoofed(hostID, addr)
            return None

    def clusterDatagram(self, data: bytes, addr) -> None:
        """A datagram from another cluster server (L{proud_twisted.cluster.direct})."""
        if self.cluster is None:
            raise ProtocolError("a datagram between cluster servers, and this server is "
                                "in no cluster")
        self.cluster.datagramReceived(data, addr)

    def malformedDatagram(self, addr, error) -> None:
        self.stats.malformedDatagrams += 1
        self.onceLog.warn(("malformed", addr), "dropped malformed datagram from {address}: "
                           "{error}", proud_event="datagram_malformed", address=addr,
                          error=str(error))

    # Internals

    def _session(self, connection) -> SessionDriver:
        """The client's reliable UDP session with the server, made at its first
        use: many clients never use it, and it is some 25 objects that every
        full garbage collection visits (it starts as the client's does, at 0)."""
        session = connection.udpSession
        if session is None:
            session = connection.udpSession = SessionDriver(
                self.reactor, connection.transmitSessionDatagram, connection.sessionEvent,
                self.sessionConfig, self.turnEnd, receiveBudget=self.receiveBudget)
        return session

    def sessionEvent(self, connection, event) -> None:
        """An event of the client's reliable UDP session with the server."""
        if type(event) is MessageReceived:
            context = MessageContext(connection.hostID, False, False, event.mode,
                                     event.channel)
            self.deliverUserMessage(connection.hostID, event.payload, context)

    def _introducePair(self, a: int, b: int, groupID) -> None:
        """Give both clients of a new pair a fresh epoch, secret and path policy."""
        self._lastPairEpoch = self._lastPairEpoch % 0xFFFFFFFF + 1
        secret = os.urandom(32)
        self._pairs[_pairKey(a, b)] = 0
        policy = 0
        if self._directAllowed.get(groupID, True):
            policy |= POLICY_DIRECT_ALLOWED
        if self.holePunchPolicy is HolePunchPolicy.ALWAYS:
            policy |= POLICY_PUNCH_AT_ONCE
        remote = self.remote
        for me, peer in ((a, b), (b, a)):
            client = self._clients.get(me)
            if client is not None:
                client.sendMessage("PEER_PAIR", peerID=peer, epoch=self._lastPairEpoch,
                                   pairSecret=secret, policy=policy)
                if remote is not None and peer in remote.homes:
                    remote.pairedLocally(me, peer, remote.homes[peer])
            elif remote is not None and me in remote.homes:
                remote.introduce(me, peer, dict(epoch=self._lastPairEpoch,
                                                secret=secret.hex(), policy=policy))

    def _client(self, hostID: int):
        try:
            return self._clients[hostID]
        except KeyError:
            raise UnknownHostID(f"no client with HostID {hostID}") from None

    def _info(self, client) -> ClientInfo:
        peer = client.transport.getPeer()
        hostID = client.hostID
        groups = self._table.groupsOf(hostID) if self._table.hasClient(hostID) else frozenset()
        return ClientInfo(client.hostID, plainAddress((peer.host, peer.port)),
                          plainAddress(client.udpAddress), client.lanAddress, groups,
                          client.userData, client.rtt)

    def refuse(self, connection, reason: JoinRefusal, reply: bytes, why: str) -> None:
        self.stats.joinsRefused += 1
        self.stats.count(self.stats.joinRefusals, reason.name)
        leaveReason = (ErrorType.SERVER_FULL if reason is JoinRefusal.SERVER_FULL
                       else ErrorType.CONNECTION_REFUSED)
        self.onceLog.warn(("refused", reason), "refusing {address}: {why} (later refusals "
                          "for this reason are counted in stats.joinsRefused)",
                          proud_event="join_refused", address=_peerAddress(connection),
                          reason=reason.name, why=why)
        connection.sendMessage("JOIN_REFUSED", reason=int(reason), reply=reply)
        connection.close(leaveReason)

    def _expandTargets(self, targets, remote=None) -> list:
        """The clients C{targets} name here; with a list C{remote}, the
        targets that are not here go into it rather than raising."""
        if isinstance(targets, int):
            targets = [targets]
        hostIDs = set()
        for target in targets:
            if self._table.hasGroup(target):
                hostIDs.update(self._table.membersOf(target))
            elif target in self._clients and not self._forwarded(target):
                hostIDs.add(target)
            elif remote is not None:
                remote.append(target)
            else:
                raise UnknownHostID(f"no client or P2P group with HostID {target}")
        clients = self._clients
        if self.remote is None:
            return [clients[h] for h in sorted(hostIDs)]
        here = []
        for hostID in sorted(hostIDs):
            client = clients.get(hostID)
            if client is not None and not self._forwarded(hostID):
                here.append(client)
            elif remote is not None:
                remote.append(hostID)         # a member of ours that lives elsewhere
        return here

    def _announceAddresses(self, client) -> None:
        """Tell every peer of C{client} its current UDP and LAN addresses."""
        body = None
        for peerID in self._table.peersOf(client.hostID):
            peer = self._clients.get(peerID)
            if peer is None:
                continue                # another server's: told below
            if body is None:
                body = self._peerAddresses(client)
            peer.sendBody(body)
        if self.remote is not None:
            self.remote.addressesChanged(client)

    def _peerAddresses(self, client) -> bytes:
        return encodeMessage("PEER_ADDRESSES", peerID=client.hostID,
                             udpAddress=addressToWire(client.udpAddress),
                             lanAddress=addressToWire(client.lanAddress))

    def _apply(self, effects, groupID=None) -> None:
        """Carry out what the group table decided (about C{groupID}), in order."""
        for effect in effects:
            kind = type(effect)
            if kind is g.MemberJoinNotice:
                # .get: an event handler may have closed a client meanwhile.
                member, to = self._clients.get(effect.memberID), self._clients.get(effect.to)
                if member is not None and to is not None:
                    udp, lan = member.udpAddress, member.lanAddress
                elif self.remote is None:
                    continue
                elif to is None:
                    self.remote.joinNotice(effect, member)      # to a client elsewhere
                    continue
                elif effect.memberID in self.remote.homes:
                    udp = lan = None        # its home gives its addresses to its peers
                else:
                    continue
                to.sendMessage(
                    "MEMBER_JOIN", groupID=effect.groupID, memberID=effect.memberID,
                    memberCount=effect.memberCount, ackID=effect.ackID,
                    udpAddress=addressToWire(udp), lanAddress=addressToWire(lan),
                    message=effect.message)
            elif kind is g.MemberLeaveNotice:
                to = self._clients.get(effect.to)
                if to is None:
                    if self.remote is not None:
                        self.remote.leaveNotice(effect)
                    continue
                to.sendMessage(
                    "MEMBER_LEAVE", groupID=effect.groupID, memberID=effect.memberID,
                    memberCount=effect.memberCount)
            elif kind is g.JoinAckComplete:
                self.dispatch("onP2PGroupJoinMemberAckComplete", effect.groupID,
                              effect.memberID, ErrorType.OK)
            elif kind is g.PairIntroduced:
                self._introducePair(effect.a, effect.b, groupID)
            elif kind is g.PairForgotten:
                if self.remote is not None:
                    self.remote.forgotten(effect.a, effect.b)
                self._pairs.pop(_pairKey(effect.a, effect.b), None)
                self.pairParted(effect.a, effect.b)
            elif kind is g.GroupRemoved:
                self._hostIDs.release(effect.groupID, self.reactor.seconds())
                self._directAllowed.pop(effect.groupID, None)
                self.log.info("P2P group {groupID} removed", proud_event="group_removed",
                              groupID=effect.groupID)
                self.dispatch("onP2PGroupRemoved", effect.groupID)

    def hackSuspected(self, client, kind: HackKind) -> None:
        """Tell the application, at most once a second per client and kind."""
        self.stats.hackSuspicions += 1
        self.stats.count(self.stats.hackReports, kind.name)
        now = self.reactor.seconds()
        reported = client.hackReported
        if reported is None:
            reported = client.hackReported = {}
        last = reported.get(kind)
        if last is not None and now - last < 1.0:
            return
        reported[kind] = now
        self.onceLog.warn(("hack", client.hostID, kind), "client {hostID} suspected: "
                           "{kind}", proud_event="hack_suspected", hostID=client.hostID,
                          kind=kind.name)
        self.dispatch("onClientHackSuspected", client.hostID, kind)

    def _relayFlood(self, sender, wait: float) -> None:
        """Over its relay limit: report it, and read nothing more from it
        until its budget has refilled (its own TCP buffers then fill)."""
        self.stats.relayRateLimited += 1
        self.hackSuspected(sender, HackKind.RELAY_FLOOD)
        sender.holdReading(min(max(wait, MIN_READ_HOLD), 1.0))

    def _relayRefused(self, sender, count: int, now: float) -> None:
        """Count refused targets; warn about them at most once a second per client."""
        self.stats.relayRejected += count
        sender.relayRefused += count
        if now - sender.relayRefusedWarned < 1.0:
            return
        count, sender.relayRefused, sender.relayRefusedWarned = sender.relayRefused, 0, now
        comment = (f"{count} relay targets of client {sender.hostID} refused since the "
                   "last warning: no shared group")
        self.onceLog.warn(("relay", sender.hostID), "{count} relay targets of client "
                          "{hostID} refused since the last warning: no shared group",
                          proud_event="relay_refused", hostID=sender.hostID, count=count)
        self.dispatch("onWarning", ErrorInfo(ErrorType.RELAY_NOT_ALLOWED, sender.hostID,
                                             comment))
        self.hackSuspected(sender, HackKind.RELAY_NOT_ALLOWED)

    def _spoofed(self, hostID: int, addr) -> None:
        self.stats.spoofedDatagrams += 1
        self.onceLog.warn(("spoofed", addr), "dropped UDP datagram claiming host "
                           "{hostID} from unexpected address {address}",
                          proud_event="datagram_spoofed", hostID=hostID, address=addr)

    def _dropSilentClients(self) -> None:
        now = self.reactor.seconds()
        deadline = now - self.clientTimeout
        self._forgetPartings(now)
        self._sweeps += 1
        releasing = self._sweeps % SWEEPS_PER_CIPHER_RELEASE == 0
        for connection in list(self._connections):
            if connection.closing:
                if now >= connection.closeDeadline:
                    connection.transport.abortConnection()      # lingered long enough
                continue
            congested = connection.congestedSince
            if congested is not None and congested < deadline:
                connection.cutSlowConsumer(
                    f"left its output undrained for {self.clientTimeout} s")
            elif not connection.joined and now >= connection.joinDeadline:
                self.stats.handshakeTimeouts += 1
                connection.abort(ErrorType.TIMEOUT,
                                 f"did not join within {self.handshakeTimeout} s")
            elif connection.lastHeard < deadline:
                self.stats.clientsTimedOut += 1
                connection.abort(ErrorType.TIMEOUT,
                                 f"silent for more than {self.clientTimeout} s")
            elif connection.stream is not None:
                connection.acknowledgeStream()
            if releasing and not connection.closing and connection.udpChannel is not None:
                # An idle client's cipher contexts are most of its memory.
                connection.tcpChannel.releaseIfIdle()
                connection.udpChannel.releaseIfIdle()
        if releasing:
            # What this sweep and the keepalive answers since the last one
            # freed (about a millisecond for a heap of 200 MB).
            returnFreedMemory()

    def _forgetPartings(self, now: float) -> None:
        parted = self._parted
        while parted:
            pair, when = next(iter(parted.items()))
            if now - when <= DEPARTED_GRACE:
                break
            del parted[pair]
