"""The server's UDP protocol: parses datagrams and hands them to the server."""

from twisted.logger import Logger

from proud_twisted._glue.udpwrite import DatagramSender
from proud_twisted.errors import ProtocolError
from proud_twisted.wire import relay
from proud_twisted.wire.datagrams import (
    UDP_CLUSTER_TYPE,
    UDP_PING_TYPE,
    decodeDatagram,
    decodePing,
)

# Per-message datagrams: type byte -> (fast decoder, what the server does with it).
_FAST_PATHS = {
    relay.UDP_RELAY: (relay.decodeUdpRelay,
                      lambda server, client, flags, targets, payload:
                      server.relay(client, targets, flags, payload)),
    relay.UDP_RELAY_BUNDLE: (relay.decodeUdpRelayBundle,
                             lambda server, client, flags, entries:
                             server.relayBundle(client, flags, entries)),
    relay.UDP_USER: (relay.decodeUdpSender,
                     lambda server, client, flags, payload:
                     server.userMessage(client, flags, payload)),
    UDP_PING_TYPE: (decodePing, lambda server, client, echo, rtt:
                    server.keepalive(client, echo, rtt)),
}
_CLUSTER = bytes((UDP_CLUSTER_TYPE,))


class ServerDatagramProtocol(DatagramSender):
    """Every client's UDP datagrams arrive here on one socket."""

    noisy = False

    log = Logger()

    def __init__(self, server) -> None:
        self.server = server

    def datagramReceived(self, data: bytes, addr) -> None:
        try:
            self._dispatch(data, addr, len(data))
        except ProtocolError as e:
            self.server.malformedDatagram(addr, e)

    def _dispatch(self, data: bytes, addr, size: int) -> None:
        if data[1:2] == _CLUSTER:
            self.server.clusterDatagram(data, addr)
            return
        data = self.server.openDatagram(data, addr)
        if data is None:
            return
        fastPath = _FAST_PATHS.get(data[1] if len(data) > 1 else -1)
        if fastPath is not None:
            decode, handle = fastPath
            hostID, *fields = decode(data)
            client = self.server.verifiedUdpClient(hostID, addr)
            if client is not None:
                handle(self.server, client, *fields)
            return
        name, fields = decodeDatagram(data)
        if name == "UDP_HELLO":
            self.server.udpHello(fields.hostID, fields.token, addr, size)
        elif name == "UDP_CHALLENGE_RESPONSE":
            self.server.udpChallengeAnswered(fields.hostID, fields.challenge, addr)
        else:
            raise ProtocolError(f"a client may not send {name}")
