"""The server's TCP protocol: one instance per client connection.

It frames and parses; everything the application sees goes through the
L{NetServer} that owns the factory.
"""

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from proud_twisted._crypto.datagrams import SERVER_DATAGRAM_HEADER, sealDatagram
from proud_twisted._crypto.resume import resumeKeyFromSession
from proud_twisted.constants import HOSTID_SERVER, ErrorType, HackKind, JoinRefusal
from proud_twisted.crypto import ServerHandshake
from proud_twisted.errors import MessageTooLong, ProtocolError
from proud_twisted.wire import relay
from proud_twisted.wire.framing import FrameDecoder, encodeFrame, frameKind
from proud_twisted.wire.handshake import isHandshakeMessage
from proud_twisted.wire.messages import decodeMessage, encodeMessage
from proud_twisted.wire.stream import ResendOverflow, isCounted

_RELAY_KINDS = frozenset({relay.TCP_RELAY_REQUEST, relay.TCP_RELAY_BUNDLE})
_BEFORE_JOIN = frozenset({"HELLO", "RESUME_REQUEST", "RESUME", "MOVE_ARRIVE"})


@implementer(IPushProducer)
class ServerConnection(Protocol):
    """A client's TCP connection, before and after it joins.

    It registers itself as a streaming producer on its transport only to learn
    when the client stops reading: Twisted pauses it once more than its
    buffer size (64 KiB) waits unsent, and resumes it once everything went
    out. While paused, unreliable output is dropped and reliable output is
    counted against the server's C{maxClientOutput}.
    """

    log = Logger()
    # No __dict__: a server keeps one per client.
    __slots__ = (
        "backlog", "closeDeadline", "closing", "congestedSince", "connected", "decoder",
        "factory", "hackReported", "handshake", "hostID", "joinDeadline", "lanAddress",
        "lastHeard", "leaveComment", "leaveReason", "login", "offlineTimer", "outgoing",
        "readingHeld", "relayLimit", "relayRefused", "relayRefusedWarned", "resumeKey",
        "resumeNonce", "resumedAt", "rtt", "server", "stream", "tcpChannel", "transport",
        "udpAddress", "udpChallenge", "udpChannel", "udpSession", "udpToken", "userData",
        "waitingToJoin",
    )

    def __init__(self, server) -> None:
        self.server = server
        self.decoder = FrameDecoder(server.maxFrameLength)
        self.hostID = 0
        self.udpToken = b""
        self.udpAddress = None
        self.lanAddress = None
        self.userData = b""
        self.udpSession = None
        self.lastHeard = 0.0
        self.leaveReason = ErrorType.DISCONNECT_FROM_REMOTE
        self.leaveComment = b""
        self.closing = False
        self.handshake = None
        self.tcpChannel = self.udpChannel = None     # SecureChannels after the handshake
        self.relayLimit = None
        self.joinDeadline = float("inf")
        self.closeDeadline = float("inf")
        self.hackReported = None        # HackKind -> when last reported, once one is
        self.waitingToJoin = False      # counted among the server's unauthenticated
        self.login = None               # the pending Deferred of an asynchronous login
        self.congestedSince = None      # when the transport paused us, while it does
        self.backlog = 0                # bytes unsent since then (an upper bound)
        self.udpChallenge = None        # (address, challenge) until that address answers
        self.relayRefused = 0           # refused relay targets not yet warned about
        self.relayRefusedWarned = float("-inf")
        self.readingHeld = False        # paused: over its relay limit
        self.stream = None              # the ResumableStream, once joined with recovery on
        self.resumeKey = None           # what proves a resume (from the handshake)
        self.resumeNonce = None         # (hostID, nonce) of a resume under way
        self.resumedAt = float("-inf")  # when its session last resumed
        self.offlineTimer = None        # while offline: the end of its recovery window
        self.rtt = None                 # the round trip its keepalives report
        self.outgoing = None            # frames written this turn, until it ends

    @property
    def secured(self) -> bool:
        return self.tcpChannel is not None

    @property
    def joined(self) -> bool:
        return self.hostID != 0

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)      # small game messages must not wait
        self.transport.registerProducer(self, True)
        self.lastHeard = self.server.reactor.seconds()
        if self.server.identity is not None:
            self.handshake = ServerHandshake(self.server.identity)
        self.server.connectionOpened(self)

    def connectionLost(self, reason) -> None:
        self.server.connectionClosed(self)

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            frames = self.decoder.feed(data)
        except MessageTooLong as e:
            self.server.stats.oversizedMessages += 1
            self.abort(ErrorType.MESSAGE_TOO_LONG, str(e))
            return
        except ProtocolError as e:
            self.protocolError(e)
            return
        self.lastHeard = self.server.reactor.seconds()
        for body in frames:
            if self.closing:
                return
            try:
                self.frameReceived(body)
            except ProtocolError as e:
                self.protocolError(e)
                return

    def frameReceived(self, body: bytes) -> None:
        if self.tcpChannel is not None:
            body = self.tcpChannel.open(body)
        elif self.handshake is not None or isHandshakeMessage(body):
            self.handshakeFrame(body)
            return
        kind = frameKind(body)
        stream = self.stream
        if stream is not None and isCounted(body) and stream.receivedFrame(len(body)):
            self.acknowledgeStream()
        if self.readingHeld and kind in _RELAY_KINDS:
            self.server.stats.relayRateLimited += 1     # over its limit: not even parsed
            return
        if self.joined and kind == relay.TCP_RELAY_REQUEST:
            flags, targets, payload = relay.decodeTcpRelayRequest(body)
            self.server.relay(self, targets, flags, payload)
            return
        if self.joined and kind == relay.TCP_RELAY_BUNDLE:
            flags, entries = relay.decodeTcpRelayBundle(body)
            self.server.relayBundle(self, flags, entries)
            return
        if self.joined and kind == relay.TCP_USER_MESSAGE:
            flags, payload = relay.decodeTcpUserMessage(body)
            self.server.userMessage(self, flags, payload)
            return
        name, fields = decodeMessage(body)
        if not self.joined and name not in _BEFORE_JOIN:
            raise ProtocolError(f"{name} before HELLO")
        handler = getattr(self, "handle_" + name, None)
        if handler is None:
            raise ProtocolError(f"a client may not send {name}")
        handler(fields)

    def handshakeFrame(self, body: bytes) -> None:
        """A frame before the session keys exist: only the handshake may speak."""
        if self.handshake is None:
            self.refuse(JoinRefusal.ENCRYPTION_MISMATCH,
                        "client wants encryption, this server has it off")
            return
        if not isHandshakeMessage(body):
            self.refuse(JoinRefusal.ENCRYPTION_MISMATCH,
                        "client did not start the secure handshake")
            return
        try:
            reply = self.handshake.receive(body)
        except ProtocolError as e:
            self.server.stats.failedHandshakes += 1
            self.abort(ErrorType.HANDSHAKE_FAILED, f"handshake failed: {e}")
            return
        if reply is not None:
            self.transport.write(encodeFrame(reply))
        if self.handshake.complete:
            keys = self.handshake.keys
            self.tcpChannel = keys.serverChannel("tcp")
            self.udpChannel = keys.serverChannel("udp")
            self.resumeKey = resumeKeyFromSession(keys)
            self.handshake = None

    def refuse(self, reason: JoinRefusal, why: str) -> None:
        """Refuse the join with a reason the client turns into a clear error."""
        self.server.refuse(self, reason, b"", why)

    def sendDatagram(self, data: bytes) -> None:
        """Send a datagram to this client's (validated) UDP address."""
        if self.udpAddress is not None:
            self.server.sendUdp(self.sealedDatagram(data), self.udpAddress)

    def answerKeepalive(self, pong: bytes) -> None:
        """Answer a UDP keepalive, then drop the UDP cipher contexts: for an
        idle client a keepalive is all the UDP there is, every few seconds."""
        self.sendDatagram(pong)
        if self.udpChannel is not None:
            self.udpChannel.release()

    def sealedDatagram(self, data: bytes) -> bytes:
        """C{data} as sent to this client: sealed when secured."""
        if self.udpChannel is not None:
            data = sealDatagram(self.udpChannel, data, SERVER_DATAGRAM_HEADER)
        return data

    # The client's reliable UDP session (bound methods, not closures: a
    # server keeps one per client, and a garbage collection visits each object)

    def transmitSessionDatagram(self, datagram: bytes) -> None:
        self.sendDatagram(relay.encodeUdpUser(HOSTID_SERVER, relay.FLAG_SESSION, datagram))

    def sessionEvent(self, event) -> None:
        self.server.sessionEvent(self, event)

    def handle_HELLO(self, fields) -> None:
        if self.joined or self.login is not None or self.resumeNonce is not None:
            raise ProtocolError("HELLO after joining")
        self.server.hello(self, fields)

    def handle_RESUME_REQUEST(self, fields) -> None:
        if self.joined or self.login is not None or self.resumeNonce is not None:
            raise ProtocolError("RESUME_REQUEST after joining or resuming")
        self.server.resumeRequested(self, fields)

    def handle_RESUME(self, fields) -> None:
        pending, self.resumeNonce = self.resumeNonce, None
        if self.joined or pending is None or pending[0] != fields.hostID:
            raise ProtocolError("RESUME without its RESUME_REQUEST")
        self.server.resume(self, fields, pending[1])

    def handle_MOVE_ARRIVE(self, fields) -> None:
        if self.joined or self.login is not None or self.resumeNonce is not None:
            raise ProtocolError("MOVE_ARRIVE after joining or resuming")
        self.server.moveArrived(self, fields)

    def handle_STREAM_ACK(self, fields) -> None:
        if self.stream is None:
            raise ProtocolError("STREAM_ACK without a resumable stream")
        self.stream.acknowledge(fields.received)

    def adopt(self, session: "ServerConnection") -> None:
        """Take over the client session of C{session}, an older connection of
        the same client (a resume): its HostID, tokens, limits and stream."""
        self.hostID = session.hostID
        self.udpToken = session.udpToken
        self.lanAddress = session.lanAddress
        self.userData = session.userData
        self.relayLimit = session.relayLimit
        self.hackReported = session.hackReported
        self.rtt = session.rtt
        self.stream, session.stream = session.stream, None
        if self.resumeKey is None:      # no handshake here: the session's key stays
            self.resumeKey = session.resumeKey

    def acknowledgeStream(self) -> None:
        """Tell the client how many counted frames came, if anything is new."""
        count = self.stream.report()
        if count is not None:
            self.sendMessage("STREAM_ACK", received=count)

    def handle_MEMBER_JOIN_ACK(self, fields) -> None:
        for ackID in fields.ackIDs:
            self.server.memberJoinAcknowledged(self, ackID)

    def handle_LAN_ADDRESS(self, fields) -> None:
        self.server.lanAddressReported(self, fields.address)

    def handle_P2P_PATH(self, fields) -> None:
        self.server.pathReported(self, fields.peerID, fields.direct)

    def handle_UDP_LOST(self, fields) -> None:
        self.server.udpLost(self)

    def handle_PING(self, fields) -> None:
        self.server.rttReported(self, fields.rtt)
        self.sendMessage("PONG", timestamp=fields.timestamp,
                         serverTime=self.server.reactor.seconds())

    def handle_GOODBYE(self, fields) -> None:
        self.leaveComment = fields.comment
        self.close(ErrorType.DISCONNECT_FROM_REMOTE)

    def sendMessage(self, kind: str, **fields) -> None:
        self.sendBody(encodeMessage(kind, **fields))

    def sendBody(self, body: bytes, droppable: bool = False) -> None:
        """Write a frame; one that is C{droppable} (unreliable) is dropped
        while the client does not read, and reliable output past the server's
        C{maxClientOutput} disconnects it (nothing reliable is lost silently)."""
        stream = self.stream
        if stream is not None and isCounted(body):
            try:
                stream.sending(body)
            except ResendOverflow as e:
                self.server.resendOverflow(self, str(e))
                return
        if not self.closing:
            self.writeBody(body, droppable)

    def writeBody(self, body: bytes, droppable: bool = False) -> None:
        """Write a frame now: L{sendBody} without keeping it for a resume."""
        if self.congestedSince is not None:
            if droppable:
                self.server.stats.outputDropped += 1
                return
            self.backlog += len(body)
            if self.backlog > self.server.maxClientOutput and self._overBudget():
                return
        if self.tcpChannel is not None:
            body = self.tcpChannel.seal(body)
        if self.outgoing is None:
            self.outgoing = [encodeFrame(body)]
            self.server.turnEnd.add(self.flushOutput)
        else:
            self.outgoing.append(encodeFrame(body))

    def flushOutput(self) -> None:
        """Hand this turn's frames to the transport in one write: a join in a
        group of G sends each member some 2G notices in one turn, and each
        transport write costs more than the sealing of a small frame."""
        frames, self.outgoing = self.outgoing, None
        if frames:
            self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def _overBudget(self) -> bool:
        """Check the transport's real backlog; drop the client if it is over budget."""
        queued = unsentBytes(self.transport)
        if queued is not None:
            self.backlog = queued
        if self.backlog <= self.server.maxClientOutput:
            return False
        self.cutSlowConsumer(f"{self.backlog} bytes of output unread, more than the "
                             f"{self.server.maxClientOutput} allowed")
        return True

    def cutSlowConsumer(self, why: str) -> None:
        """Drop a client that does not read what the server sends it."""
        self.server.stats.slowConsumers += 1
        self.abort(ErrorType.SLOW_CONSUMER, why)

    def holdReading(self, seconds: float) -> None:
        """Read nothing from this client for C{seconds} (it is over its relay limit)."""
        if self.readingHeld or self.closing:
            return
        self.readingHeld = True
        self.transport.pauseProducing()
        self.server.reactor.callLater(seconds, self._resumeReading)

    def _resumeReading(self) -> None:
        self.readingHeld = False
        if not self.closing:
            self.transport.resumeProducing()

    # IPushProducer: the transport tells us when the client stops reading.

    def pauseProducing(self) -> None:
        if self.congestedSince is None:
            self.congestedSince = self.server.reactor.seconds()
            queued = unsentBytes(self.transport)
            self.backlog = queued if queued is not None else self.transport.bufferSize

    def resumeProducing(self) -> None:
        self.congestedSince = None
        self.backlog = 0

    def stopProducing(self) -> None:
        pass

    def protocolError(self, error: ProtocolError) -> None:
        self.server.stats.malformedMessages += 1
        if self.joined:
            self.server.hackSuspected(self, HackKind.BAD_MESSAGE)
        self.abort(ErrorType.PROTOCOL_ERROR, str(error))

    def abort(self, reason: ErrorType, why: str) -> None:
        """Drop this connection at once; the reason is logged once per source host."""
        peer = self.transport.getPeer()
        host = getattr(peer, "host", None)
        self.server.onceLog.warn((reason, host),
                                 "closing connection of host {hostID} from {address}: {why}",
                                 proud_event="connection_aborted", hostID=self.hostID,
                                 address=(host, getattr(peer, "port", None)),
                                 reason=reason.name, why=why)
        if not self.closing:
            self.leaveReason = reason
            self.closing = True
        self.outgoing = None
        self.transport.abortConnection()        # the client leaves when it is lost

    def close(self, reason: ErrorType) -> None:
        """Close after what was already written has gone out, or at the
        server's C{closeLinger} deadline if the client does not read it.

        The client leaves the server's tables (and its groups) at once.
        """
        if not self.closing:
            if self.stream is not None:
                self.writeBody(encodeMessage("SESSION_ENDED"))     # do not come back
            self.leaveReason = reason
            self.closing = True
            self.closeDeadline = self.server.reactor.seconds() + self.server.closeLinger
            self.flushOutput()                      # what was written goes out first
            self.transport.unregisterProducer()     # else a paused close waits forever
            self.transport.loseConnection()
            self.server.connectionClosing(self)


def unsentBytes(transport):
    """Bytes a Twisted transport holds unsent, or None if it does not say."""
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except AttributeError:
        return None


class ServerConnectionFactory(Factory):
    noisy = False

    def __init__(self, server) -> None:
        self.server = server

    def buildProtocol(self, addr):
        protocol = ServerConnection(self.server)
        protocol.factory = self
        return protocol
