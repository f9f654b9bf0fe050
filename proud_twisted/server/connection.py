"""The server's TCP protocol: one instance per client connection.

It frames and parses; everything the application sees goes through the
L{NetServer} that owns the factory.
"""

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from proud_twisted.constants import ErrorType
from proud_twisted.errors import MessageTooLong, ProtocolError
from proud_twisted.wire import relay
from proud_twisted.wire.framing import FrameDecoder, encodeFrame
from proud_twisted.wire.messages import decodeMessage, encodeMessage


class ServerConnection(Protocol):
    """A client's TCP connection, before and after it joins."""

    log = Logger()

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

    @property
    def joined(self) -> bool:
        return self.hostID != 0

    def connectionMade(self) -> None:
        self.lastHeard = self.server.reactor.seconds()
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
        kind = body[0]
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
        if not self.joined and name != "HELLO":
            raise ProtocolError(f"{name} before HELLO")
        handler = getattr(self, "handle_" + name, None)
        if handler is None:
            raise ProtocolError(f"a client may not send {name}")
        handler(fields)

    def handle_HELLO(self, fields) -> None:
        if self.joined:
            raise ProtocolError("HELLO after joining")
        self.server.hello(self, fields)

    def handle_MEMBER_JOIN_ACK(self, fields) -> None:
        self.server.memberJoinAcknowledged(self, fields.ackID)

    def handle_LAN_ADDRESS(self, fields) -> None:
        self.server.lanAddressReported(self, fields.address)

    def handle_P2P_PATH(self, fields) -> None:
        self.server.pathReported(self, fields.peerID, fields.direct)

    def handle_UDP_LOST(self, fields) -> None:
        self.server.udpLost(self)

    def handle_PING(self, fields) -> None:
        self.sendMessage("PONG", timestamp=fields.timestamp)

    def handle_GOODBYE(self, fields) -> None:
        self.leaveComment = fields.comment
        self.close(ErrorType.DISCONNECT_FROM_REMOTE)

    def sendMessage(self, kind: str, **fields) -> None:
        self.sendBody(encodeMessage(kind, **fields))

    def sendBody(self, body: bytes) -> None:
        if not self.closing:
            self.transport.write(encodeFrame(body))

    def protocolError(self, error: ProtocolError) -> None:
        self.server.stats.malformedMessages += 1
        self.abort(ErrorType.PROTOCOL_ERROR, str(error))

    def abort(self, reason: ErrorType, why: str) -> None:
        """Drop this connection at once for a reason logged once."""
        self.log.warn("closing connection of host {hostID} from {peer}: {why}",
                      hostID=self.hostID, peer=self.transport.getPeer(), why=why)
        self.leaveReason = reason
        self.closing = True
        self.transport.abortConnection()

    def close(self, reason: ErrorType) -> None:
        """Close after what was already written has gone out."""
        if not self.closing:
            self.leaveReason = reason
            self.closing = True
            self.transport.loseConnection()


class ServerConnectionFactory(Factory):
    noisy = False

    def __init__(self, server) -> None:
        self.server = server

    def buildProtocol(self, addr):
        protocol = ServerConnection(self.server)
        protocol.factory = self
        return protocol
