"""The client's TCP protocol to the server and its UDP protocol."""

from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger

from proud_twisted._crypto.datagrams import SERVER_DATAGRAM_HEADER, openDatagram
from proud_twisted._crypto.resume import resumeKeyFromSession
from proud_twisted._glue.udpwrite import DatagramSender
from proud_twisted.constants import ErrorType
from proud_twisted.crypto import ClientHandshake
from proud_twisted.errors import MessageTooLong, ProtocolError
from proud_twisted.wire import relay
from proud_twisted.wire.datagrams import decodeDatagram
from proud_twisted.wire.framing import FrameDecoder, encodeFrame, frameKind
from proud_twisted.wire.messages import decodeMessage, encodeMessage
from proud_twisted.wire.punch import PEER_TYPE_FIRST, PEER_TYPE_LAST
from proud_twisted.wire.stream import isCounted

# Messages a server may send, each handled by ClientEngine.server_<NAME>.
_SERVER_MESSAGES = frozenset({
    "JOIN_ACCEPTED", "JOIN_REFUSED", "MEMBER_JOIN", "MEMBER_LEAVE",
    "PEER_ADDRESSES", "PEER_PAIR", "PONG", "STREAM_ACK", "RECOVERY", "RESUME_CHALLENGE",
    "RESUME_ACCEPTED", "RESUME_REFUSED", "MEMBER_OFFLINE", "MEMBER_ONLINE", "SESSION_ENDED",
    "MOVE", "MOVE_ACCEPTED",
})
_SERVER_DATAGRAMS = frozenset({"UDP_HELLO_ACK", "UDP_PONG", "UDP_CHALLENGE"})
_JOIN_REFUSED = 3   # may come in the clear, before any keys exist
_PEER_FRAME = bytes((relay.UDP_PEER_FRAME,))


def _handleServerMessage(client, decoded: tuple, allowed: frozenset) -> str:
    """Hand a decoded C{(name, fields)} to C{client.server_<name>} if a server
    may send it (C{allowed}); return the name. L{ProtocolError} otherwise."""
    name, fields = decoded
    if name not in allowed:
        raise ProtocolError(f"a server may not send {name}")
    getattr(client, "server_" + name)(fields)
    return name


class ClientConnection(Protocol):
    """The TCP connection of a L{NetClient} to its server."""

    log = Logger()

    def __init__(self, client, maxFrameLength: int) -> None:
        self.client = client
        self.decoder = FrameDecoder(maxFrameLength)
        self.closeReason = None
        self.handshake = None
        self.tcpChannel = None
        self.resumeKey = None       # derived from this connection's handshake

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)      # small game messages must not wait
        if self.client.encryption:
            self.handshake = ClientHandshake(self.client.serverKey)
            self.transport.write(encodeFrame(self.handshake.start()))
        else:
            self.client.tcpConnected(self)

    def connectionLost(self, reason) -> None:
        self.client.tcpLost(self, self.closeReason or ErrorType.DISCONNECT_FROM_REMOTE)

    def dataReceived(self, data: bytes) -> None:
        if self.closeReason is not None:
            return
        try:
            for body in self.decoder.feed(data):
                self.client.heardFromServer()
                self.frameReceived(body)
                if self.closeReason is not None:
                    return
        except MessageTooLong as e:
            self.abort(ErrorType.MESSAGE_TOO_LONG, str(e))
        except ProtocolError as e:
            self.abort(ErrorType.PROTOCOL_ERROR, str(e))

    def frameReceived(self, body: bytes) -> None:
        if self.tcpChannel is not None:
            body = self.tcpChannel.open(body)
        elif self.handshake is not None and body[0] != _JOIN_REFUSED:
            self.handshakeFrame(body)
            return
        kind = frameKind(body)
        if self.client.stream is not None and isCounted(body):
            self.client.countedFrame(len(body))
        if kind == relay.TCP_RELAYED:
            sender, flags, payload = relay.decodeTcpRelayed(body)
            self.client.relayedReceived(sender, flags, payload)
        elif kind == relay.TCP_USER_MESSAGE:
            flags, payload = relay.decodeTcpUserMessage(body)
            self.client.serverMessageReceived(flags, payload)
        else:
            name = _handleServerMessage(self.client, decodeMessage(body), _SERVER_MESSAGES)
            if name == "JOIN_REFUSED":
                self.close(ErrorType.CONNECTION_REFUSED)

    def handshakeFrame(self, body: bytes) -> None:
        try:
            finished = self.handshake.receive(body)
        except ProtocolError as e:
            self.client.handshakeFailed(e)
            self.abort(ErrorType.HANDSHAKE_FAILED, f"secure handshake failed: {e}")
            return
        self.transport.write(encodeFrame(finished))
        keys = self.handshake.keys
        self.handshake = None
        self.tcpChannel = keys.clientChannel("tcp")
        self.resumeKey = resumeKeyFromSession(keys)
        self.client.udpChannel = keys.clientChannel("udp")
        self.client.tcpConnected(self)

    def sendMessage(self, kind: str, **fields) -> None:
        self.sendBody(encodeMessage(kind, **fields))

    def sendBody(self, body: bytes) -> None:
        if self.closeReason is None:
            if self.tcpChannel is not None:
                body = self.tcpChannel.seal(body)
            self.transport.write(encodeFrame(body))

    def abort(self, reason: ErrorType, why: str) -> None:
        self.log.warn("dropping the server connection: {why}",
                      proud_event="server_connection_aborted", reason=reason.name, why=why)
        self.closeReason = reason
        self.transport.abortConnection()

    def close(self, reason: ErrorType) -> None:
        if self.closeReason is None:
            self.closeReason = reason
            self.transport.loseConnection()


class ClientConnectionFactory(ClientFactory):
    noisy = False

    def __init__(self, client, maxFrameLength: int) -> None:
        self.client = client
        self.maxFrameLength = maxFrameLength

    def buildProtocol(self, addr):
        return ClientConnection(self.client, self.maxFrameLength)

    def clientConnectionFailed(self, connector, reason) -> None:
        self.client.tcpConnectFailed(reason)


class ClientDatagramProtocol(DatagramSender):
    """The client's one UDP socket, for the server and for every peer."""

    noisy = False

    def __init__(self, client) -> None:
        self.client = client

    def datagramReceived(self, data: bytes, addr) -> None:
        try:
            self._dispatch(data, addr)
        except ProtocolError:
            self.client.malformedDatagram(addr)

    def _dispatch(self, data: bytes, addr) -> None:
        if len(data) > 1 and PEER_TYPE_FIRST <= data[1] <= PEER_TYPE_LAST:
            self.client.peerDatagramReceived(data, addr)
            return
        if addr != self.client.serverUdpAddress:
            self.client.malformedDatagram(addr)
            return
        if data[1:2] == _PEER_FRAME:
            # Relayed as is; the pair's own keys authenticate it.
            sender, flags, payload = relay.decodeUdpSender(data)
            if not flags & relay.FLAG_SESSION:
                raise ProtocolError("a relayed peer frame must be a session frame")
            self.client.relayedReceived(sender, flags, payload)
            return
        channel = self.client.udpChannel
        if channel is not None:
            data = openDatagram(channel, data, SERVER_DATAGRAM_HEADER)
        kind = data[1] if len(data) > 1 else -1
        if kind == relay.UDP_RELAYED:
            sender, flags, payload = relay.decodeUdpSender(data)
            self.client.heardFromServerUdp()
            self.client.relayedReceived(sender, flags, payload)
        elif kind == relay.UDP_USER:
            _, flags, payload = relay.decodeUdpSender(data)
            self.client.heardFromServerUdp()
            self.client.serverMessageReceived(flags, payload)
        else:
            _handleServerMessage(self.client, decodeDatagram(data), _SERVER_DATAGRAMS)
