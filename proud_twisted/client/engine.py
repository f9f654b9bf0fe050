"""The client's engine: what its protocols call, and the state behind L{NetClient}.

The game API lives on the facade (L{proud_twisted.client.netclient.NetClient},
documented by L{INetClient}); the TCP and UDP protocols, the peer links and
the relay batcher talk to the engine.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer, task
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorPluggableNameResolver
from twisted.logger import Logger

from proud_twisted._crypto.datagrams import CLIENT_DATAGRAM_HEADER, sealDatagram
from proud_twisted._crypto.resume import resumeProof
from proud_twisted._glue.callbacks import EventDispatcher
from proud_twisted._glue.coredriver import CoreDriver, TurnEnd
from proud_twisted._glue.oncelog import OnceLog
from proud_twisted._glue.sessiondriver import SessionDriver
from proud_twisted._glue.udpbuffers import SocketBuffers, checkedBufferSize, sizeUdpBuffers
from proud_twisted.client.connection import (
    ClientConnectionFactory,
    ClientDatagramProtocol,
)
from proud_twisted.client.peerlinks import PeerLinks
from proud_twisted.client.peers import PeerTable
from proud_twisted.client.reconnect import Backoff
from proud_twisted.client.relaybatch import RelayBatcher
from proud_twisted.client.serverpath import ServerPath, ServerPathConfig, ServerUdpStateChanged
from proud_twisted.constants import (
    HOSTID_NONE,
    HOSTID_SERVER,
    ErrorType,
    JoinRefusal,
    ServerUdpState,
)
from proud_twisted.errors import (
    ConnectionRefusedByServer,
    HandshakeFailed,
    JoinCancelled,
    JoinFailed,
    JoinTimeout,
    MessageTooLong,
    NotConnected,
    ProtocolError,
    ProtocolVersionMismatch,
    SendQueueFull,
    UnknownHostID,
)
from proud_twisted.info import MessageContext
from proud_twisted.rmi.errors import RmiVersionMismatch
from proud_twisted.rudp import DeliveryMode, MessageReceived, Priority
from proud_twisted.rudp.config import checkedSendOptions
from proud_twisted.wire import relay
from proud_twisted.wire.addresses import addressFromWire, addressToWire
from proud_twisted.wire.framing import FRAME_HEADROOM
from proud_twisted.wire.messages import WIRE_VERSION, encodeMessage, versionBytes
from proud_twisted.wire.stream import ResendOverflow, ResumableStream, isCounted

LINGER_CHECK_INTERVAL = 0.01
KEEPALIVES_PER_TIMEOUT = 3
"""Keepalives a client sends within the server's client timeout (20 s: one
every 6.7 s), so that one lost keepalive or answer is never a timeout. While
the UDP path to the server works and answers they go over UDP only: one small
datagram each way, the whole idle cost of a player to the server. A keepalive
interval without a word from the server adds a TCP ping."""
UDP_LOST_AFTER_KEEPALIVES = 2.5
"""Keepalive intervals without a word from the server over UDP after which its
UDP path counts as lost (two lost answers in a row, and some slack)."""
MIN_UDP_LOST_AFTER = 10.0
TCP_KEEPALIVE_WHILE_UDP = 60.0
"""Seconds between TCP pings while the keepalives go over UDP: the TCP
connection and its NAT mapping still get a word now and then."""
SYNC_PINGS = 4
"""Extra pings on the first confirmation of the UDP path, 0.2 s apart, so
that the server's clock is known at once, and within a second from the best
of four round trips rather than from one keepalive every 6.7 s: four more
small datagrams each way per join."""
MAX_JOIN_ACKS = 1024
"""Most join notices acknowledged in one message (4 bytes each)."""
MAX_UNACKNOWLEDGED_TO_SERVER = 1024 * 1024
"""Bytes of reliable messages to the server a client keeps until the server
has acknowledged them (to send them again after a reconnection): about 16
maximum-size messages, or a 30-second outage of 35 KB/s of game messages.
A reliable send to the server past it raises L{SendQueueFull}."""
STREAM_ACK_DELAY = 0.5
"""Seconds after a counted frame from the server within which the client
acknowledges it (at once after 32 frames or 64 KiB)."""
# How a connection may end with the session kept for a resume (as the server's).
_RECOVERABLE = frozenset({ErrorType.DISCONNECT_FROM_REMOTE, ErrorType.TIMEOUT})
# What onJoinServerComplete hears for a refusal (CONNECTION_REFUSED otherwise).
_REFUSAL_ERRORS = {
    JoinRefusal.SERVER_FULL: ErrorType.SERVER_FULL,
    JoinRefusal.LOGIN_ERROR: ErrorType.LOGIN_FAILED,
    JoinRefusal.LOGIN_TIMEOUT: ErrorType.LOGIN_FAILED,
}


def _chunks(items: list, size: int):
    """C{items} in consecutive slices of at most C{size}."""
    return (items[start:start + size] for start in range(0, len(items), size))


class _AttemptFactory(ClientConnectionFactory):
    """The factory of one L{NetClient.connect}: it remembers the connection
    it built, and only the attempt under way may report a failure, so that a
    connection given up on (a failed join's, still closing) cannot disturb
    the next attempt."""

    connection = None

    def buildProtocol(self, addr):
        self.connection = super().buildProtocol(addr)
        return self.connection

    def clientConnectionFailed(self, connector, reason) -> None:
        if self.client._attempt is self:
            self.client.tcpConnectFailed(reason)


class ClientEngine:
    """One client's state and the protocol hooks; see L{NetClient} for the settings."""

    log = Logger()
    rmi = None
    """The L{proud_twisted.rmi.endpoint.RmiEndpoint}, once anything is attached."""

    def __init__(self, events, reactor, *, maxMessageLength, udpInterface, sessionConfig,
                 pathConfig, maxDirectPeers, encryption, serverKey, udpBufferSize) -> None:
        self.reactor = reactor
        self.events = events
        self.dispatch = EventDispatcher(self.events, self.log)
        self.maxMessageLength = maxMessageLength
        self.udpInterface = udpInterface
        self.sessionConfig = sessionConfig
        self.encryption = encryption
        self.serverKey = serverKey
        self.udpBufferSize = checkedBufferSize(udpBufferSize)
        self.udpSocketBuffers: SocketBuffers | None = None
        self.udpChannel = None
        self.serverUdpAddress = None
        self.malformedDatagrams = 0
        self.onceLog = OnceLog(self.log)
        # Told the reason after each onLeaveServer (the service joins again).
        self.leftServer: Callable[[ErrorType], None] | None = None
        self.peerTable = PeerTable()
        self.peerLinks = PeerLinks(self, pathConfig, maxDirectPeers)
        # One end-of-turn flush for every session, path and the relay batch.
        self.turnEnd = TurnEnd(self.reactor)
        self.relayBatcher = RelayBatcher(
            self.turnEnd, self.getLocalHostID,
            self._udpConfirmed,
            self._sendUdp, self.sendToServerTcp)
        self._serverSession = None
        self.stream = None
        self._reconnect = None
        self._attemptTimer = None
        self._ackTimer = None
        self._reset()

    def _reset(self) -> None:
        self._hostID = HOSTID_NONE
        self._cancelRecoveryTimers()
        self.stream = None          # the ResumableStream to the server, with recovery on
        self._recovery = None       # (window, resume key) the server offered
        self._offlineSince = None   # while offline: when the connection dropped
        self._offlineReason = ErrorType.CONNECTION_LOST
        self._offlineClock = None   # the ServerClock, from going offline to resuming
        self._move = None           # while moving: (host, TCP port, UDP port, token)
        self._backoff = None
        self._attempt = None        # the _AttemptFactory of the connection under way or joined
        self._stopConnecting = None
        self._connection = None     # once the handshake is done
        self._joining = None
        self._joinTimer = None
        self._closed = None
        self._udpToken = b""
        self._udpPort = None
        self._udp = ClientDatagramProtocol(self)    # sends nothing until it listens
        self._serverPath = None         # the UDP path to the server, once joined
        self._serverPathDriver = None
        self._lastHeard = 0.0
        self._lastTcpPing = float("-inf")
        self._keepaliveInterval = 1.0
        self._serverTimeout = 20.0
        self._keepalive = None
        self._joinAcks = []         # notices processed this turn, acknowledged at its end
        for peer in self.peerTable.clear():
            self.peerLinks.gone(peer)
        self.relayBatcher.cancel()
        self.turnEnd.cancel()
        if self._serverSession is not None:
            self._serverSession.close()
        self._serverSession = None
        self.serverUdpAddress = None
        self.udpChannel = None

    # Connecting

    def connect(self, host: str, port: int, protocolVersion, userData: bytes,
                timeout: float) -> defer.Deferred:
        if self._attempt is not None or self._hostID != HOSTID_NONE:
            raise JoinFailed("already connected or connecting")
        self._protocolVersion = versionBytes(protocolVersion)
        self._userData = userData
        self._server = (host, port)
        self._attempt = factory = _AttemptFactory(self, self.maxMessageLength + FRAME_HEADROOM)
        self._joining = joining = defer.Deferred(self._cancelJoin)
        self._joinTimer = self.reactor.callLater(timeout, self._joinTimedOut, timeout)
        try:
            stop = self._startConnecting(factory, host, port, timeout)
        except Exception as e:
            self._failJoin(JoinFailed(f"cannot connect: {e}"), ErrorType.CONNECTION_LOST)
        else:
            if self._attempt is factory:    # (it may have failed already)
                self._stopConnecting = stop
        return joining

    def _startConnecting(self, factory, host: str, port: int, timeout: float):
        """Start the TCP connection of C{factory}; return what stops it."""
        if (isIPAddress(host) or isIPv6Address(host)
                or not IReactorPluggableNameResolver.providedBy(self.reactor)):
            return self.reactor.connectTCP(host, port, factory, timeout=timeout).disconnect
        # A name: its IPv6 and IPv4 addresses both (an IPv6-only mobile
        # network's DNS64 gives no IPv4 one), the first to answer wins.
        attempt = HostnameEndpoint(self.reactor, host, port, timeout=timeout).connect(factory)
        attempt.addErrback(self._nameConnectFailed, factory)   # may fail the join at once
        return attempt.cancel

    def _nameConnectFailed(self, reason, factory) -> None:
        if self._attempt is factory:    # not an attempt given up (cancelled) already
            self.tcpConnectFailed(reason)

    def _cancelJoin(self, joining: defer.Deferred) -> None:
        if joining is self._joining:
            self._failJoin(JoinCancelled("connect() was cancelled"),
                           ErrorType.DISCONNECT_FROM_LOCAL)

    def disconnect(self, comment: bytes, linger: float) -> defer.Deferred:
        if self._offlineSince is not None:
            self._leave(ErrorType.DISCONNECT_FROM_LOCAL)
            return defer.succeed(None)
        if self._joining is not None:
            self._failJoin(JoinCancelled("disconnect() was called while joining"),
                           ErrorType.DISCONNECT_FROM_LOCAL)
            return defer.succeed(None)
        if self._connection is None:
            return defer.succeed(None)
        if self._closed is None:
            self._closed = defer.Deferred()
            self._leaveWhenDrained(comment, self.reactor.seconds() + linger)
        return self._closed

    def _leaveWhenDrained(self, comment: bytes, deadline: float) -> None:
        if self._connection is None:
            return
        drivers = [p.driver for p in self.peerTable.peers.values() if p.driver is not None]
        for driver in drivers:
            driver.flush()
        busy = any(d.stats.bytesInFlight or d.stats.sendQueueLength for d in drivers)
        if busy and self.reactor.seconds() < deadline:
            self.reactor.callLater(LINGER_CHECK_INTERVAL, self._leaveWhenDrained,
                                   comment, deadline)
            return
        if self._offlineSince is None:
            self._connection.sendMessage("GOODBYE", comment=comment)
        self._connection.close(ErrorType.DISCONNECT_FROM_LOCAL)

    # Queries

    def getLocalHostID(self) -> int:
        return self._hostID

    def getLocalJoinedP2PGroups(self) -> frozenset:
        return frozenset(self.peerTable.groups)

    def getGroupMembers(self, group: int) -> frozenset:
        try:
            return frozenset(self.peerTable.groups[group])
        except KeyError:
            raise UnknownHostID(f"not a member of a P2P group {group}") from None

    def getPeerInfo(self, peer: int):
        return self._peer(peer).info()

    def _peer(self, peer: int):
        try:
            return self.peerTable.peers[peer]
        except KeyError:
            raise UnknownHostID(f"no peer with HostID {peer}") from None

    def getPeerHostIDs(self) -> list:
        return sorted(self.peerTable.peers)

    def whenDirect(self, peer: int) -> defer.Deferred:
        return self.peerLinks.whenDirect(self._peer(peer))

    def forceRelay(self, peer: int, on: bool = True) -> None:
        self.peerLinks.forceRelay(self._peer(peer), on)

    def getServerUdpState(self) -> ServerUdpState:
        return (self._serverPath.state if self._serverPath is not None
                else ServerUdpState.UNCONFIRMED)

    def _udpConfirmed(self) -> bool:
        return (self._serverPath is not None
                and self._serverPath.state is ServerUdpState.CONFIRMED)

    def _serverClock(self):
        """The server's clock as sampled on the UDP path (kept while offline)."""
        path = self._serverPath
        return path.clock if path is not None else self._offlineClock

    def getServerTime(self) -> float | None:
        clock = self._serverClock()
        return clock.serverTime(self.reactor.seconds()) if clock is not None else None

    def getServerTimeError(self) -> float | None:
        clock = self._serverClock()
        return clock.error(self.reactor.seconds()) if clock is not None else None

    def getServerRtt(self) -> float | None:
        clock = self._serverClock()
        return clock.srtt if clock is not None else None

    def getPublicUdpAddress(self):
        return self._serverPath.publicAddress if self._serverPath is not None else None

    def getLocalUdpAddress(self):
        if self._udpPort is None:
            return None
        host = self._udpPort.getHost()
        return (host.host, host.port)

    # Sending

    def send(self, targets, payload: bytes, mode: DeliveryMode, priority: Priority,
             channel: int) -> None:
        if self._hostID == HOSTID_NONE:
            raise NotConnected("not joined to a server")
        if len(payload) > self.maxMessageLength:
            raise MessageTooLong(f"{len(payload)} bytes exceed {self.maxMessageLength}")
        mode, priority = checkedSendOptions(mode, priority, channel)
        if type(targets) is int:
            peer = self.peerTable.peers.get(targets)
            if peer is not None and peer.driver is not None:
                # The common case, one peer, without expanding groups.
                self._checkRoom(len(payload), mode, channel, (peer,), None)
                self.peerLinks.send(peer, payload, mode, priority, channel)
                return
        toServer = False
        peers, strangers = [], []
        for hostID in self.peerTable.expand(self._hostID, targets):
            if hostID == HOSTID_SERVER:
                toServer = True
                continue
            peer = self.peerTable.peers.get(hostID)
            if peer is None or peer.driver is None:
                strangers.append(hostID)
            else:
                peers.append(peer)
        serverSession = (self._serverSession if toServer and self._serverBySession(mode)
                         else None)
        if toServer and serverSession is None:
            self._checkStreamRoom(len(payload))
        if peers or serverSession is not None:
            self._checkRoom(len(payload), mode, channel, peers, serverSession)
        for peer in peers:
            self.peerLinks.send(peer, payload, mode, priority, channel)
        if toServer:
            self._sendToServer(payload, mode, priority, channel)
        if strangers:
            # Not a peer of ours: the server decides (and refuses) the relay.
            flags = relay.FLAG_RELIABLE if mode is DeliveryMode.RELIABLE else 0
            for some in _chunks(strangers, relay.MAX_RELAY_TARGETS):
                self.sendToServerTcp(relay.encodeTcpRelayRequest(some, flags, payload))

    def _checkStreamRoom(self, size: int) -> None:
        """Raise unless the resend buffer to the server takes C{size} more bytes."""
        stream = self.stream
        if (stream is not None and stream.unacknowledgedBytes + size + 2
                > stream.maxUnacknowledged):
            raise SendQueueFull(f"{stream.unacknowledgedBytes} bytes to the server wait "
                                "for its acknowledgement: no room for more",
                                [HOSTID_SERVER])

    def _checkRoom(self, size: int, mode, channel: int, peers, serverSession) -> None:
        """Raise unless every session the send queues into takes it: all or none."""
        if size > self.sessionConfig.maxMessageLength:
            raise MessageTooLong(
                f"{size} bytes exceed the session's {self.sessionConfig.maxMessageLength}")
        full = [peer.hostID for peer in peers
                if not peer.driver.session.canSend(size, mode, channel)]
        if serverSession is not None and not serverSession.session.canSend(size, mode, channel):
            full.insert(0, HOSTID_SERVER)
        if full:
            names = ", ".join(str(hostID) for hostID in full)
            raise SendQueueFull(f"no room for {size} more bytes in the send queue of "
                                f"{names}: sent to none", full)

    def _serverBySession(self, mode) -> bool:
        """Whether a message to the server goes by the UDP session (else by TCP)."""
        return mode is not DeliveryMode.RELIABLE and self._udpConfirmed()

    def _sendToServer(self, payload, mode, priority, channel) -> None:
        if self._serverBySession(mode):
            self._serverSession.send(payload, mode, priority, channel)
        else:
            flags = relay.FLAG_RELIABLE if mode is DeliveryMode.RELIABLE else 0
            self.sendToServerTcp(relay.encodeTcpUserMessage(flags, payload))

    # Called by the protocols

    def tcpConnected(self, connection) -> None:
        self._connection = connection
        self.heardFromServer()
        if self._move is not None:
            connection.sendMessage("MOVE_ARRIVE", wireVersion=WIRE_VERSION,
                                   hostID=self._hostID, token=self._move[3])
            return
        if self._offlineSince is not None:
            connection.sendMessage("RESUME_REQUEST", wireVersion=WIRE_VERSION,
                                   hostID=self._hostID)
            return
        connection.sendMessage("HELLO", wireVersion=WIRE_VERSION,
                               protocolVersion=self._protocolVersion,
                               rmiFingerprints=b"" if self.rmi is None
                               else self.rmi.fingerprints(),
                               userData=self._userData)

    def tcpConnectFailed(self, reason) -> None:
        if self._offlineSince is not None:
            self._attemptFailed()
            return
        self._failJoin(JoinFailed(f"cannot connect: {reason.getErrorMessage()}"),
                       ErrorType.CONNECTION_LOST)

    def handshakeFailed(self, error) -> None:
        self._failJoin(HandshakeFailed(f"secure handshake with the server failed: {error}"),
                       ErrorType.HANDSHAKE_FAILED)

    def tcpLost(self, connection, reason: ErrorType) -> None:
        attempt = self._attempt
        if attempt is None or connection is not attempt.connection:
            return      # one given up already (a failed join's, closing): not ours now
        if self._offlineSince is not None:
            self._attemptFailed(lost=True)      # a resume attempt's connection
            return
        if (self.stream is not None and self._closed is None
                and reason in _RECOVERABLE):
            self._goOffline(reason)
            return
        if self._hostID != HOSTID_NONE:
            self._leave(reason, closing=False)
            return
        joining, self._joining = self._joining, None
        self._stopTimers()
        if self._udpPort is not None:
            self._udpPort.stopListening()
        self._reset()
        if joining is not None:
            self._reportJoinFailure(joining, JoinFailed(
                f"connection closed before joining: {reason.value}"), reason)

    def _leave(self, reason: ErrorType, closing: bool = True) -> None:
        """Leave the server for good: forget the session, close the
        connection or attempt under way (if C{closing}), then tell the game."""
        closed = self._closed
        hostID = self._hostID
        attempt = self._attempt if closing else None
        connection = attempt.connection if attempt is not None else None
        stop = self._stopConnecting if connection is None and attempt is not None else None
        self._stopTimers()
        if self._udpPort is not None:
            self._udpPort.stopListening()
        self._reset()
        if connection is not None:
            connection.close(reason)    # (a resume attempt's: its loss is no one's now)
        elif stop is not None:
            stop()
        self.log.info("{hostID} left the server: {reason}", proud_event="server_leave",
                      hostID=hostID, reason=reason.name)
        self.dispatch("onLeaveServer", reason)
        if self.leftServer is not None:
            self.leftServer(reason)
        if closed is not None:
            closed.callback(None)

    def heardFromServer(self) -> None:
        self._lastHeard = self.reactor.seconds()

    def heardFromServerUdp(self) -> None:
        now = self._lastHeard = self.reactor.seconds()
        if self._serverPath is not None:
            self._serverPath.heard(now)

    def server_JOIN_ACCEPTED(self, fields) -> None:
        if self._joining is None or self._hostID != HOSTID_NONE:
            return
        self._hostID = fields.hostID
        self._udpToken = fields.udpToken
        self._serverTimeout = fields.clientTimeoutMs / 1000.0
        peer = self._connection.transport.getPeer()
        self.serverUdpAddress = (peer.host, fields.udpPort)
        self._udp = ClientDatagramProtocol(self)
        # One socket for the server and every peer, of the server's family.
        interface = self.udpInterface or ("::" if isIPv6Address(peer.host) else "")
        self._udpPort = self.reactor.listenUDP(0, self._udp, interface=interface)
        self.udpSocketBuffers = sizeUdpBuffers(self._udpPort, self.udpBufferSize,
                                               self.log.info)
        if self._recovery is not None:
            self.stream = ResumableStream(MAX_UNACKNOWLEDGED_TO_SERVER)
        self._keepaliveInterval = max(self._serverTimeout / KEEPALIVES_PER_TIMEOUT, 0.05)
        self._startServerLink()
        joining, self._joining = self._joining, None
        self._cancelJoinTimer()
        self.dispatch("onJoinServerComplete", ErrorType.OK, fields.reply)
        if not joining.called:      # (unless cancelled from onJoinServerComplete)
            joining.callback(self._hostID)

    def _startServerLink(self) -> None:
        """Once joined or resumed: tell the LAN address, start the keepalives,
        the reliable UDP session and the UDP path to the server."""
        local = self._connection.transport.getHost()
        self.sendServerMessage("LAN_ADDRESS", address=addressToWire(
            (local.host, self._udpPort.getHost().port)))
        keepaliveInterval = self._keepaliveInterval
        self._lastTcpPing = self.reactor.seconds()      # (joining was TCP traffic)
        self._keepalive = task.LoopingCall(self._keepAlive)
        self._keepalive.clock = self.reactor
        self._keepalive.start(keepaliveInterval, now=False)
        self._serverSession = SessionDriver(
            self.reactor, self._serverTransmit, self._serverDeliver, self.sessionConfig,
            self.turnEnd)
        self._serverPath = ServerPath(self._hostID, self._udpToken,
                                      ServerPathConfig(
                                          pingInterval=keepaliveInterval,
                                          syncPings=SYNC_PINGS,
                                          lostAfter=max(MIN_UDP_LOST_AFTER,
                                                        UDP_LOST_AFTER_KEEPALIVES
                                                        * keepaliveInterval)))
        if self._offlineClock is not None:      # resumed: the samples still hold
            self._serverPath.clock, self._offlineClock = self._offlineClock, None
        self._serverPathDriver = CoreDriver(self.reactor, self._serverPath, self._sendUdp,
                                            self._serverUdpStateChanged, self.turnEnd)
        self._serverPathDriver.input(self._serverPath.start)    # the first hello, now

    def server_RECOVERY(self, fields) -> None:
        """The server keeps our session across a dropped connection (before
        JOIN_ACCEPTED): the window, and the resume key if no handshake gave one."""
        if self._joining is None or self._hostID != HOSTID_NONE:
            raise ProtocolError("RECOVERY outside a join")
        key = fields.resumeSecret or self._connection.resumeKey
        if key is None:
            raise ProtocolError("RECOVERY without a resume key")
        self._recovery = (fields.windowMs / 1000.0, key)

    def server_STREAM_ACK(self, fields) -> None:
        if self.stream is None:
            raise ProtocolError("STREAM_ACK without a resumable stream")
        self.stream.acknowledge(fields.received)

    def countedFrame(self, size: int) -> None:
        """A counted frame of C{size} bytes came from the server: acknowledge
        it now (after many) or within L{STREAM_ACK_DELAY}."""
        if self.stream.receivedFrame(size):
            if self._ackTimer is not None and self._ackTimer.active():
                self._ackTimer.cancel()
            self._sendStreamAck()
        elif self._ackTimer is None:
            self._ackTimer = self.reactor.callLater(STREAM_ACK_DELAY, self._sendStreamAck)

    def _sendStreamAck(self) -> None:
        self._ackTimer = None
        count = self.stream.report() if self.stream is not None else None
        if count is not None and self._connection is not None and self._offlineSince is None:
            self._connection.sendMessage("STREAM_ACK", received=count)

    def server_MOVE(self, fields) -> None:
        """The server moves us to another server of its cluster: everything
        it sent before came first; close this connection (what we sent on it
        still goes out) and arrive there with the token."""
        if self.stream is None or self._offlineSince is not None:
            raise ProtocolError("MOVE without a resumable session")
        try:
            host = fields.host.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("MOVE to a host that is no name") from None
        self._move = (host, fields.tcpPort, fields.udpPort, fields.token)
        self._server = (host, fields.tcpPort)
        connection = self._connection
        # What we send from now on goes to the new server, counted afresh there.
        self.stream = ResumableStream(MAX_UNACKNOWLEDGED_TO_SERVER)
        self._leaveGroupsForMove()
        self._goOffline(ErrorType.DISCONNECT_FROM_REMOTE, moving=True)
        connection.close(ErrorType.DISCONNECT_FROM_LOCAL)
        self.log.info("{hostID}: moved by the server to {host}:{port}",
                      proud_event="server_move", hostID=self._hostID, host=host,
                      port=fields.tcpPort)

    def _leaveGroupsForMove(self) -> None:
        """The source took us out of its groups (and those of other servers
        we were in through it) when it moved us: we leave them as a member
        that leaves does, each member's C{onP2PMemberLeave} and then our
        own, group by group."""
        groups = sorted(self.peerTable.groups.items())
        for peer in self.peerTable.clear():
            self.peerLinks.gone(peer)
        for groupID, members in groups:
            others = sorted(members - {self._hostID})
            for memberID in [*others, self._hostID]:
                self.dispatch("onP2PMemberLeave", memberID, groupID, len(others))

    def server_MOVE_ACCEPTED(self, fields) -> None:
        if self._move is None or self._connection is None:
            raise ProtocolError("MOVE_ACCEPTED while not moving")
        host, tcpPort, _udpPort, _token = self._move
        self._move = None
        if self._attemptTimer is not None and self._attemptTimer.active():
            self._attemptTimer.cancel()
        self._attemptTimer = None
        self._offlineSince = None
        self._offlineClock = None           # another server: another clock
        self._backoff = None
        self._udpToken = fields.udpToken
        self._serverTimeout = fields.clientTimeoutMs / 1000.0
        peer = self._connection.transport.getPeer()
        self.serverUdpAddress = (peer.host, fields.udpPort)
        key = fields.resumeSecret or self._connection.resumeKey
        if key is None:
            raise ProtocolError("MOVE_ACCEPTED without a resume key")
        self._recovery = (self._recovery[0], key)
        self.peerLinks.relayPathChanged()
        for body in self.stream.resendAfter(0):
            self._connection.sendBody(body)
        self._startServerLink()
        self.log.info("{hostID} arrived at {host}:{port}", proud_event="server_moved",
                      hostID=self._hostID, host=host, port=tcpPort)
        self.dispatch("onServerMoved", (host, tcpPort))

    def _goOffline(self, reason: ErrorType, moving: bool = False) -> None:
        """The connection dropped (or, C{moving}, was closed for a move):
        keep the session, and try to resume it (or arrive)."""
        self._offlineSince = self.reactor.seconds()
        self._offlineReason = reason
        self._connection = None
        self._attempt = None
        self._stopTimers()
        self._offlineClock = self._serverPath.clock
        self._serverPath = self._serverPathDriver = None
        self._cancelRecoveryTimers()
        if self._serverSession is not None:
            self._serverSession.close()
            self._serverSession = None
        self.peerLinks.relayPathChanged()
        self._backoff = Backoff()
        if moving:
            self._reconnect = self.reactor.callLater(0, self._tryResume)
            return
        self.log.info("{hostID}: the server connection dropped ({reason}); resuming "
                      "within {window} s", proud_event="server_offline", hostID=self._hostID,
                      reason=reason.name, window=self._recovery[0])
        self.dispatch("onServerOffline", reason)
        if self._offlineSince is not None:      # (the game may have left in it)
            self._scheduleResume()

    def _scheduleResume(self) -> None:
        now = self.reactor.seconds()
        left = self._offlineSince + self._recovery[0] - now
        if left <= 0:
            self._leave(self._offlineReason)
            return
        self._reconnect = self.reactor.callLater(min(self._backoff.next(), left),
                                                 self._tryResume)

    def _tryResume(self) -> None:
        """One reconnection attempt, bounded in time."""
        self._reconnect = None
        left = self._offlineSince + self._recovery[0] - self.reactor.seconds()
        timeout = max(min(self._backoff.attemptTimeout, left), 0.1)
        self._attempt = factory = _AttemptFactory(self, self.maxMessageLength + FRAME_HEADROOM)
        self._attemptTimer = self.reactor.callLater(timeout, self._attemptFailed)
        try:
            stop = self._startConnecting(factory, *self._server, timeout)
        except Exception as e:
            self.log.info("cannot reconnect: {error}", error=e)
            self._attemptFailed()
        else:
            if self._attempt is factory:
                self._stopConnecting = stop

    def _attemptFailed(self, lost: bool = False) -> None:
        """The resume attempt under way failed or took too long (or its
        connection was C{lost}): give it up and try again later (or leave,
        once the window has run out)."""
        if self._attemptTimer is not None and self._attemptTimer.active():
            self._attemptTimer.cancel()
        self._attemptTimer = None
        attempt, self._attempt = self._attempt, None
        stop, self._stopConnecting = self._stopConnecting, None
        connection, self._connection = self._connection, None
        if attempt is not None and attempt.connection is not None:
            connection = attempt.connection
        if connection is not None:
            if not lost:
                connection.abort(ErrorType.TIMEOUT, "resume attempt took too long")
        elif stop is not None:
            stop()
        if self._offlineSince is not None and self._reconnect is None:
            self._scheduleResume()

    def _checkResuming(self, name: str) -> None:
        """L{ProtocolError} unless a resume of a session we still hold is under way."""
        if (self._offlineSince is None or self._connection is None or self.stream is None
                or self._recovery is None):
            raise ProtocolError(f"{name} while not resuming")

    def server_RESUME_CHALLENGE(self, fields) -> None:
        self._checkResuming("RESUME_CHALLENGE")
        self._connection.sendMessage(
            "RESUME", hostID=self._hostID, received=self.stream.received,
            proof=resumeProof(self._recovery[1], self._hostID, fields.nonce))

    def server_RESUME_ACCEPTED(self, fields) -> None:
        self._checkResuming("RESUME_ACCEPTED")
        resend = self.stream.resendAfter(fields.received)
        if self._attemptTimer is not None and self._attemptTimer.active():
            self._attemptTimer.cancel()
        self._attemptTimer = None
        offlineFor = self.reactor.seconds() - self._offlineSince
        self._offlineSince = None
        self._backoff = None
        if self._connection.resumeKey is not None:      # a new handshake: a new key
            self._recovery = (self._recovery[0], self._connection.resumeKey)
        for body in resend:
            self._connection.sendBody(body)
        self._startServerLink()
        self.log.info("{hostID} resumed its session with the server after "
                      "{seconds:.1f} s ({resent} frames sent again)",
                      proud_event="server_resumed", hostID=self._hostID,
                      seconds=offlineFor, resent=len(resend))
        self.dispatch("onServerOnline")

    def server_RESUME_REFUSED(self, fields) -> None:
        if self._offlineSince is None:
            raise ProtocolError("RESUME_REFUSED while not resuming")
        self.log.info("{hostID}: the server refused to resume the session (code "
                      "{code})", proud_event="resume_refused_by_server",
                      hostID=self._hostID, code=fields.reason)
        self._leave(self._offlineReason)

    def server_SESSION_ENDED(self, fields) -> None:
        """The server closes our connection on purpose: leave when it is gone."""
        self.stream = None

    def server_MEMBER_OFFLINE(self, fields) -> None:
        self.dispatch("onP2PMemberOffline", fields.memberID)

    def server_MEMBER_ONLINE(self, fields) -> None:
        self.dispatch("onP2PMemberOnline", fields.memberID)

    def _cancelRecoveryTimers(self) -> None:
        for name in ("_reconnect", "_attemptTimer", "_ackTimer"):
            timer = getattr(self, name)
            if timer is not None and timer.active():
                timer.cancel()
            setattr(self, name, None)

    def server_JOIN_REFUSED(self, fields) -> None:
        try:
            reason = JoinRefusal(fields.reason)
        except ValueError:
            # A newer server's reason: still a refusal.
            self.log.info("the server refused the join with unknown reason {code}",
                          proud_event="join_refused_unknown_reason", code=fields.reason)
            reason = JoinRefusal.REFUSED_BY_APPLICATION
        if reason is JoinRefusal.VERSION_MISMATCH:
            error, kind = ProtocolVersionMismatch(
                "the server speaks another protocol version"), ErrorType.PROTOCOL_VERSION_MISMATCH
        elif reason is JoinRefusal.ENCRYPTION_MISMATCH:
            error, kind = HandshakeFailed(
                "client and server disagree on encryption"), ErrorType.HANDSHAKE_FAILED
        elif reason is JoinRefusal.RMI_MISMATCH:
            error = RmiVersionMismatch.fromReply(fields.reply)
            kind = ErrorType.PROTOCOL_VERSION_MISMATCH
        else:
            error = ConnectionRefusedByServer(fields.reply, reason)
            kind = _REFUSAL_ERRORS.get(reason, ErrorType.CONNECTION_REFUSED)
        self._failJoin(error, kind, fields.reply)

    def server_MEMBER_JOIN(self, fields) -> None:
        addresses = (addressFromWire(fields.udpAddress), addressFromWire(fields.lanAddress))
        self.peerTable.memberJoined(self._hostID, fields.groupID, fields.memberID, addresses)
        peer = self.peerTable.peers.get(fields.memberID)
        if peer is not None:
            self.peerLinks.addressesChanged(peer)
        self.dispatch("onP2PMemberJoin", fields.memberID, fields.groupID,
                      fields.memberCount, fields.message)
        if fields.ackID:
            if not self._joinAcks:
                self.turnEnd.add(self._sendJoinAcks)
            self._joinAcks.append(fields.ackID)

    def _sendJoinAcks(self) -> None:
        """Acknowledge the join notices processed this turn, in one message
        (a group of G members forming sends each member G notices)."""
        acks, self._joinAcks = self._joinAcks, []
        for ackIDs in _chunks(acks, MAX_JOIN_ACKS):
            self.sendServerMessage("MEMBER_JOIN_ACK", ackIDs=ackIDs)

    def server_PEER_PAIR(self, fields) -> None:
        peer, old = self.peerTable.pairIntroduced(fields.peerID, fields.epoch,
                                                  fields.pairSecret)
        if old is not None:
            self.peerLinks.gone(old)
        self.peerLinks.paired(peer, fields.policy)

    def server_MEMBER_LEAVE(self, fields) -> None:
        for peer in self.peerTable.memberLeft(self._hostID, fields.groupID, fields.memberID):
            self.peerLinks.gone(peer)
        self.dispatch("onP2PMemberLeave", fields.memberID, fields.groupID,
                      fields.memberCount)

    def server_PEER_ADDRESSES(self, fields) -> None:
        self.peerTable.updateAddresses(fields.peerID, addressFromWire(fields.udpAddress),
                                       addressFromWire(fields.lanAddress))
        peer = self.peerTable.peers.get(fields.peerID)
        if peer is not None:
            self.peerLinks.addressesChanged(peer)

    def server_PONG(self, fields) -> None:
        self._timeSample(fields)

    def server_UDP_HELLO_ACK(self, fields) -> None:
        if self._serverPath is not None:
            self._serverPathDriver.input(self._serverPath.helloAcknowledged,
                                         addressFromWire(fields.address))

    def server_UDP_CHALLENGE(self, fields) -> None:
        """The server checks that our UDP address is ours: answer from it."""
        if self._serverPath is not None:
            self._serverPathDriver.input(self._serverPath.challenged, fields.challenge)

    def server_UDP_PONG(self, fields) -> None:
        self.heardFromServerUdp()
        self._timeSample(fields)

    def _timeSample(self, fields) -> None:
        """A keepalive's answer: a sample of the server's clock and our round trip."""
        if self._serverPath is not None and not self._serverPath.clock.pongReceived(
                fields.timestamp, fields.serverTime, self.reactor.seconds()):
            self.onceLog.warn("pong", "rejected a keepalive answer that answers no "
                              "ping of ours (later ones are only counted)")

    def relayedReceived(self, sender: int, flags: int, payload: bytes) -> None:
        if flags & relay.FLAG_PUNCH:
            self.peerLinks.punchRequested(sender)
            return
        if not flags & relay.FLAG_SESSION:
            context = MessageContext(sender, bool(flags & relay.FLAG_RELIABLE), relayed=True)
            self.deliverUserMessage(sender, payload, context)
            return
        self.peerLinks.relayedFrame(sender, payload)

    def peerDatagramReceived(self, data: bytes, addr) -> None:
        self.peerLinks.peerDatagram(data, addr)

    def serverMessageReceived(self, flags: int, payload: bytes) -> None:
        if flags & relay.FLAG_SESSION:
            if self._serverSession is not None:
                try:
                    self._serverSession.receiveDatagram(payload)
                except ProtocolError:
                    self.malformedDatagrams += 1
            return
        context = MessageContext(HOSTID_SERVER, bool(flags & relay.FLAG_RELIABLE))
        self.deliverUserMessage(HOSTID_SERVER, payload, context)

    def malformedDatagram(self, addr) -> None:
        self.malformedDatagrams += 1

    # Used by PeerLinks

    def sendDatagramTo(self, data: bytes, address) -> None:
        self._udp.send(data, address)

    def sendToServerTcp(self, body: bytes) -> None:
        """Send a frame to the server; a counted one is kept until the server
        acknowledges it, and while offline only kept (the rest dropped)."""
        stream = self.stream
        if stream is not None and isCounted(body):
            try:
                stream.sending(body)
            except ResendOverflow as e:
                self._resendOverflow(e)
                return
        if self._connection is not None and self._offlineSince is None:
            self._connection.sendBody(body)

    def sendServerMessage(self, kind: str, **fields) -> None:
        self.sendToServerTcp(encodeMessage(kind, **fields))

    def _resendOverflow(self, error: ResendOverflow) -> None:
        """More reliable output than the server acknowledged: the session
        cannot be kept whole, so it ends (after this turn)."""
        self.log.warn("leaving the server: {why}", proud_event="server_resend_overflow",
                      hostID=self._hostID, size=self.stream.unacknowledgedBytes,
                      why=str(error))
        self.stream = None
        if self._connection is not None and self._offlineSince is None:
            self._connection.abort(ErrorType.SLOW_CONSUMER, str(error))
        else:
            self.reactor.callLater(0, self._leave, ErrorType.SLOW_CONSUMER)

    def deliverMessage(self, sender: int, event, relayed: bool) -> None:
        context = MessageContext(sender, event.mode is DeliveryMode.RELIABLE, relayed,
                                 event.mode, event.channel)
        self.deliverUserMessage(sender, event.payload, context)

    def deliverUserMessage(self, sender: int, payload: bytes, context) -> None:
        """An RMI message goes to the attached RMI endpoint, any other to
        C{onReceiveUserMessage}."""
        rmi = self.rmi
        if rmi is None or not rmi.receive(sender, payload, context):
            self.dispatch("onReceiveUserMessage", sender, payload, context)

    # The client-server UDP session

    def _serverTransmit(self, datagram: bytes) -> None:
        if self._udpConfirmed():
            self._sendUdp(relay.encodeUdpUser(self._hostID, relay.FLAG_SESSION, datagram))

    def _serverDeliver(self, event) -> None:
        if type(event) is MessageReceived:
            self.deliverMessage(HOSTID_SERVER, event, False)

    # Internals

    def _failJoin(self, error: Exception, kind: ErrorType, reply: bytes = b"",
                  abort: bool = False) -> bool:
        """Give up the join under way, if any: stop connecting or close (or
        C{abort}) its connection, forget it, then report C{error}, once.

        The client is ready for another C{connect} before anyone hears."""
        joining, self._joining = self._joining, None
        if joining is None:
            return False
        attempt, stop = self._attempt, self._stopConnecting
        connection = attempt.connection if attempt is not None else None
        self._stopTimers()
        self._reset()
        if connection is not None:
            if abort:
                connection.abort(kind, str(error))
            else:
                connection.close(kind)
        elif stop is not None:
            stop()
        self._reportJoinFailure(joining, error, kind, reply)
        return True

    def _reportJoinFailure(self, joining: defer.Deferred, error: Exception, kind: ErrorType,
                           reply: bytes = b"") -> None:
        self.log.info("joining the server failed: {error}", proud_event="server_join_failed",
                      reason=kind.name, error=str(error))
        self.dispatch("onJoinServerComplete", kind, reply)
        if not joining.called:      # (unless cancelled from onJoinServerComplete)
            joining.errback(error)

    def _joinTimedOut(self, timeout: float) -> None:
        self._joinTimer = None
        self._failJoin(JoinTimeout(f"no join within {timeout} s"), ErrorType.TIMEOUT,
                       abort=True)

    def _cancelJoinTimer(self) -> None:
        if self._joinTimer is not None and self._joinTimer.active():
            self._joinTimer.cancel()
        self._joinTimer = None

    def _keepAlive(self) -> None:
        now = self.reactor.seconds()
        if now - self._lastHeard > self._serverTimeout:
            self._connection.abort(ErrorType.TIMEOUT, "the server went silent")
            return
        if (not self._udpConfirmed() or now - self._lastHeard > self._keepaliveInterval
                or now - self._lastTcpPing >= TCP_KEEPALIVE_WHILE_UDP):
            self._lastTcpPing = now
            clock = self._serverPath.clock
            self._connection.sendMessage("PING", timestamp=clock.pingSent(now),
                                         rtt=clock.reportedRtt)

    def _sendUdp(self, data: bytes) -> None:
        if self._udpPort is not None:
            if self.udpChannel is not None:
                data = sealDatagram(self.udpChannel, data, CLIENT_DATAGRAM_HEADER)
            self._udp.send(data, self.serverUdpAddress)

    def _serverUdpStateChanged(self, event: ServerUdpStateChanged) -> None:
        """The L{ServerPath} changed state: the server, the peer links and the game hear."""
        if event.state is ServerUdpState.LOST:
            self.sendServerMessage("UDP_LOST")
        self.peerLinks.relayPathChanged()
        self.dispatch("onChangeServerUdpState", event.state)

    def _stopTimers(self) -> None:
        self._cancelJoinTimer()
        if self._serverPathDriver is not None:
            self._serverPathDriver.close()
            self._serverPath.close()
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
