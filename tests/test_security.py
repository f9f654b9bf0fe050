"""Security: what an observer, a forger, a replayer and a cheater can do.

Deterministic, in the memory network (trial and pytest).
"""

import contextlib
import uuid

from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import (
    HOSTID_SERVER,
    HandshakeFailed,
    NetClient,
    NetServer,
    ServerUdpState,
)
from proud_twisted.client.serverpath import HELLO_PADDING
from proud_twisted.constants import ErrorType, HackKind
from proud_twisted.crypto import IdentityKey
from proud_twisted.testing import LinkConditions, MemoryNetwork
from proud_twisted.wire import relay
from proud_twisted.wire.datagrams import encodeDatagram
from proud_twisted.wire.framing import encodeFrame
from proud_twisted.wire.messages import encodeMessage
from tests.support import RecordingClientEvents, RecordingServerEvents, stopMemoryWorld

VERSION = uuid.UUID("5ec0e0a1-1a2b-4c3d-8e9f-a0b1c2d3e4f5")
SERVER_IP = "203.0.113.1"
SECRET = b"SECRET-PAYLOAD-only-the-peer-may-read"


class HackRecordingServerEvents(RecordingServerEvents):
    def onClientHackSuspected(self, hostID, kind):
        self.rec.record("onClientHackSuspected", hostID, kind)


class World:
    """A server and clients on public hosts; every datagram and TCP write captured."""

    def __init__(self, testCase, clients=2, serverOptions=None, clientOptions=None):
        self.net = MemoryNetwork(seed=1)
        self.net.setDefaultConditions(LinkConditions(latency=0.01))
        self.serverHost = self.net.addHost(SERVER_IP)
        self.serverEvents = HackRecordingServerEvents(self.net.clock)
        self.server = NetServer(self.serverEvents, VERSION, tcpPort=9000, udpPort=9000,
                                reactor=self.serverHost, **(serverOptions or {}))
        self.server.startService()
        self.captured = []
        self._tap(self.server._engine._udpPort)
        self.hosts = [self.net.addHost(f"198.51.100.{10 + i}") for i in range(clients)]
        self.clients = [NetClient(RecordingClientEvents(self.net.clock), reactor=host,
                                  **(clientOptions or {})) for host in self.hosts]
        testCase.addCleanup(self.stop)

    def join(self):
        joins = [c.connect(SERVER_IP, 9000, VERSION) for c in self.clients]
        assert self.net.runUntil(lambda: all(d.called for d in joins), 10)
        for client in self.clients:
            self._tap(client._engine._udpPort)
            self._tap(client._engine._connection.transport)
        for connection in self.server._engine._connections:
            self._tap(connection.transport)
        assert self.net.runUntil(lambda: all(
            c.getServerUdpState() is ServerUdpState.CONFIRMED for c in self.clients), 10)
        return joins

    def _tap(self, writer):
        original = writer.write
        captured = self.captured

        def write(data, *args):
            captured.append(bytes(data))
            return original(data, *args)
        writer.write = write

    @property
    def ids(self):
        return [c.getLocalHostID() for c in self.clients]

    def group(self, **options):
        group = self.server.createP2PGroup(self.ids, **options)
        assert self.net.runUntil(lambda: self.serverEvents.rec.count(
            "onP2PGroupJoinMemberAckComplete") >= len(self.clients), 5)
        return group

    def relayedPair(self):
        """Join both clients and group them on the relay: (a, b, ida, idb)."""
        self.join()
        self.group(allowDirectP2P=False)
        return (*self.clients, *self.ids)

    def serverConnection(self, hostID):
        return self.server._engine._clients[hostID]

    def stop(self):
        stopMemoryWorld(self.net, self.server, self.clients)


class PassiveObserverTests(SynchronousTestCase):
    def test_noPlaintextOnAnyPath(self):
        world = World(self)
        world.join()
        a, b = world.clients
        ida, idb = world.ids
        world.group(allowDirectP2P=False)
        a.send(idb, SECRET + b" relayed reliable")
        a.send(idb, SECRET + b" relayed unreliable", reliable=False)
        a.send(HOSTID_SERVER, SECRET + b" to the server")
        a.send(HOSTID_SERVER, SECRET + b" to the server, unreliable", reliable=False)
        world.server.send(ida, SECRET + b" from the server")
        world.server.send(ida, SECRET + b" from the server, unreliable", reliable=False)
        world.net.advance(2)
        self.assertEqual(len(b.events.messagesFrom(ida)), 2)
        self.assertEqual(world.serverEvents.rec.count("onReceiveUserMessage"), 2)
        self.assertEqual(len(a.events.messagesFrom(HOSTID_SERVER)), 2)
        self.assertGreater(len(world.captured), 10)
        for data in world.captured:
            self.assertNotIn(b"SECRET-PAYLOAD", data)

    def test_directPathCarriesNoPlaintext(self):
        world = World(self)
        world.join()
        a, b = world.clients
        ida, idb = world.ids
        world.group()
        d = a.whenDirect(idb)
        self.assertTrue(world.net.runUntil(lambda: d.called, 3))
        before = len(world.captured)
        a.send(idb, SECRET + b" direct")
        self.assertTrue(world.net.runUntil(lambda: b.events.messagesFrom(ida), 2))
        self.assertFalse(b.events.rec.named("onReceiveUserMessage")[-1][2].relayed)
        self.assertGreater(len(world.captured), before)
        for data in world.captured:
            self.assertNotIn(b"SECRET-PAYLOAD", data)


class TamperingTests(SynchronousTestCase):
    def captureUdpToServer(self, world, client, send):
        """The datagram C{send()} makes C{client} write to the server."""
        before = len(world.captured)
        send()
        world.net.advance(0)
        server = world.server.getUdpAddress()
        sent = [d for d in world.captured[before:] if len(d) > 6 and d[2:6] ==
                client.getLocalHostID().to_bytes(4, "big")]
        self.assertTrue(sent, "no datagram captured")
        return sent[-1], server

    def test_flippedBitInAnyUdpDatagramRejectedAndReplayDropped(self):
        world = World(self, clients=1)
        world.join()
        (a,) = world.clients
        address = world.server.getClientInfo(a.getLocalHostID()).udpAddress
        datagram, _ = self.captureUdpToServer(
            world, a, lambda: a.send(HOSTID_SERVER, b"once", reliable=False))
        world.net.advance(1)
        received = world.serverEvents.rec.count("onReceiveUserMessage")
        self.assertEqual(received, 1)
        protocol = world.server._engine._udp
        spoofedBefore = world.server.stats.spoofedDatagrams
        for bit in range(len(datagram) * 8):
            tampered = bytearray(datagram)
            tampered[bit // 8] ^= 1 << (bit % 8)
            protocol.datagramReceived(bytes(tampered), address)
        protocol.datagramReceived(datagram, address)           # a replay
        world.net.advance(1)
        self.assertEqual(world.serverEvents.rec.count("onReceiveUserMessage"), received)
        self.assertGreaterEqual(world.server.stats.spoofedDatagrams - spoofedBefore,
                                len(datagram) * 8 - 8)

    def assertRecordClosesOnlyThatConnection(self, world, seal):
        """Client a writes C{seal(channel)} as a TCP frame: a goes, b carries on."""
        a, b = world.clients
        idb = world.ids[1]
        connection = a._engine._connection
        connection.transport.write(encodeFrame(seal(connection.tcpChannel)))
        self.assertTrue(world.net.runUntil(
            lambda: a.events.rec.count("onLeaveServer") == 1, 5))
        self.assertEqual(world.server.stats.malformedMessages, 1)
        self.assertEqual(world.server.getClientHostIDs(), [idb])
        world.server.send(idb, b"b carries on")
        self.assertTrue(world.net.runUntil(
            lambda: b.events.messagesFrom(HOSTID_SERVER) == [b"b carries on"], 2))

    def test_flippedBitInTcpFrameClosesOnlyThatConnection(self):
        world = World(self, clients=2)
        world.join()
        world.group(allowDirectP2P=False)

        def tampered(channel):
            record = bytearray(channel.seal(encodeMessage("PING", timestamp=1.0, rtt=0.1)))
            record[len(record) // 2] ^= 0x10
            return bytes(record)
        self.assertRecordClosesOnlyThatConnection(world, tampered)

    def test_emptySealedTcpRecordClosesOnlyThatConnection(self):
        """A genuine record that opens to nothing is malformed, not a crash."""
        world = World(self, clients=2)
        world.join()
        self.assertRecordClosesOnlyThatConnection(world, lambda channel: channel.seal(b""))

    def test_emptySealedTcpRecordFromTheServerIsAProtocolError(self):
        world = World(self, clients=1)
        world.join()
        (a,) = world.clients
        connection = world.serverConnection(a.getLocalHostID())
        connection.transport.write(encodeFrame(connection.tcpChannel.seal(b"")))
        self.assertTrue(world.net.runUntil(
            lambda: a.events.rec.count("onLeaveServer") == 1, 5))
        self.assertEqual(a.events.rec.named("onLeaveServer"),
                         [(ErrorType.PROTOCOL_ERROR,)])

    def test_forgedHostIDOnUdpDeliversNothing(self):
        world = World(self, clients=3)
        world.join()
        _a, b, mallory = world.clients
        ida, idb, idm = world.ids
        world.group(allowDirectP2P=False)       # mallory is even a member
        datagram, _server = self.captureUdpToServer(
            world, mallory, lambda: mallory.send(idb, b"from mallory", reliable=False))
        forged = datagram[:2] + ida.to_bytes(4, "big") + datagram[6:]
        world.net.advance(1)
        before = len(b.events.messagesFrom(ida))
        spoofed = world.server.stats.spoofedDatagrams
        udp = world.server._engine._udp
        udp.datagramReceived(forged, world.server.getClientInfo(idm).udpAddress)
        udp.datagramReceived(forged, world.server.getClientInfo(ida).udpAddress)
        world.net.advance(1)
        self.assertEqual(len(b.events.messagesFrom(ida)), before)
        self.assertEqual(world.server.stats.spoofedDatagrams - spoofed, 2)

    def test_udpHelloAnswerNeverLargerThanTheHello(self):
        world = World(self, clients=1)
        world.join()
        engine = world.clients[0]._engine      # once more, now that everything is captured
        engine._sendUdp(encodeDatagram("UDP_HELLO", hostID=engine.getLocalHostID(),
                                       token=engine._udpToken, padding=HELLO_PADDING))
        world.net.advance(1)
        hellos = [d for d in world.captured if len(d) > 1 and d[1] == 1]
        acks = [d for d in world.captured if len(d) > 1 and d[1] == 2]
        self.assertTrue(hellos and acks)
        self.assertLessEqual(max(map(len, acks)), min(map(len, hellos)))


class ServerIdentityTests(SynchronousTestCase):
    def test_clientPinnedToTheRightKeyJoins(self):
        identity = IdentityKey.generate()
        world = World(self, clients=1, serverOptions={"identity": identity},
                      clientOptions={"serverKey": identity.publicKey()})
        joins = world.join()
        self.successResultOf(joins[0])

    def test_clientPinnedToAnotherKeyRefusesToJoin(self):
        world = World(self, clients=1,
                      clientOptions={"serverKey": IdentityKey.generate().publicKey()})
        d = world.clients[0].connect(SERVER_IP, 9000, VERSION)
        world.net.advance(2)
        self.failureResultOf(d, HandshakeFailed)
        self.assertEqual(world.server.getClientHostIDs(), [])

    def test_encryptionMismatchIsAClearErrorBothWays(self):
        for serverOn, clientOn in ((True, False), (False, True)):
            with self.subTest(server=serverOn, client=clientOn):
                world = World(self, clients=1, serverOptions={"encryption": serverOn},
                              clientOptions={"encryption": clientOn})
                d = world.clients[0].connect(SERVER_IP, 9000, VERSION)
                world.net.advance(2)
                failure = self.failureResultOf(d, HandshakeFailed)
                self.assertIn("encryption", failure.getErrorMessage())
                world.stop()


class _Dribbler(Protocol):
    """Opens a connection and sends one byte a second, never a whole frame."""

    def connectionMade(self):
        self.closed = False
        self.factory.connections.append(self)
        self.drip()

    def drip(self):
        if not self.closed:
            # A frame that announces 256 bytes, then the bytes one at a time.
            self.transport.write(b"\x00\x00\x01\x00" if not self.factory.dripped else b"x")
            self.factory.dripped += 1
            self.factory.host.callLater(1.0, self.drip)

    def connectionLost(self, reason):
        self.closed = True


class _DribblerFactory(ClientFactory):
    protocol = _Dribbler

    def __init__(self, host):
        self.host = host
        self.connections = []
        self.dripped = 0


class ResourceLimitTests(SynchronousTestCase):
    def test_silentOrDribblingConnectionClosedAfterHandshakeTimeout(self):
        world = World(self, clients=0, serverOptions={"handshakeTimeout": 3.0})
        host = world.net.addHost("198.51.100.99")
        factory = _DribblerFactory(host)
        host.connectTCP(SERVER_IP, 9000, factory)
        world.net.advance(2)
        self.assertEqual(world.server.getConnectionCount(), 1)
        world.net.advance(3)
        self.assertEqual(world.server.getConnectionCount(), 0)
        self.assertTrue(factory.connections[0].closed)
        self.assertEqual(world.server.stats.handshakeTimeouts, 1)

    def test_unauthenticatedConnectionsCapped(self):
        world = World(self, clients=1, serverOptions={"maxUnauthenticated": 3,
                                                      "handshakeTimeout": 60})
        host = world.net.addHost("198.51.100.98")
        factory = _DribblerFactory(host)
        for _ in range(5):
            host.connectTCP(SERVER_IP, 9000, factory)
        world.net.advance(0.5)
        self.assertEqual(world.server.getConnectionCount(), 3)
        self.assertEqual(world.server.stats.unauthenticatedRefused, 2)
        # Honest clients still get in once the flood is gone.
        for connection in factory.connections:
            connection.closed = True
            connection.transport.loseConnection()
        world.net.advance(0.5)
        joins = world.join()
        self.successResultOf(joins[0])

    def test_relayFloodDroppedAndReportedOthersUnharmed(self):
        world = World(self, clients=3, serverOptions={"relayFramesPerSecond": 50,
                                                      "relayBytesPerSecond": 1_000_000})
        world.join()
        flooder, victim, honest = world.clients
        idf, idv, idh = world.ids
        world.group(allowDirectP2P=False)
        from proud_twisted import SendQueueFull
        for i in range(400):
            with contextlib.suppress(SendQueueFull):
                flooder.send(idv, b"spam %4d" % i + bytes(1000), reliable=False)
            world.net.advance(0.002)
        world.net.advance(0.5)
        self.assertGreater(world.server.stats.relayRateLimited, 0)
        self.assertIn((idf, HackKind.RELAY_FLOOD),
                      world.serverEvents.rec.named("onClientHackSuspected"))
        self.assertLess(len(victim.events.messagesFrom(idf)), 400)
        honest.send(idv, b"hello")
        self.assertTrue(world.net.runUntil(
            lambda: victim.events.messagesFrom(idh) == [b"hello"], 3))

    def test_relayToAStrangerIsReportedAsSuspicious(self):
        world = World(self, clients=3)
        world.join()
        a, _b, stranger = world.clients
        world.server.createP2PGroup(world.ids[:2])
        world.net.advance(1)
        stranger.send(world.ids[0], b"let me in")
        world.net.advance(1)
        self.assertIn((world.ids[2], HackKind.RELAY_NOT_ALLOWED),
                      world.serverEvents.rec.named("onClientHackSuspected"))
        self.assertEqual(a.events.messagesFrom(world.ids[2]), [])


class ForbiddenMessageTests(SynchronousTestCase):
    def test_aMessageOnlyTheServerMaySendIsReportedAndDisconnects(self):
        world = World(self, clients=2)
        world.join()
        cheater, _honest = world.clients
        idc, idh = world.ids
        cheater._engine._connection.sendMessage("PEER_PAIR", peerID=idh, epoch=1,
                                        pairSecret=bytes(32), policy=0)
        self.assertTrue(world.net.runUntil(
            lambda: cheater.events.rec.count("onLeaveServer") == 1, 5))
        self.assertIn((idc, HackKind.BAD_MESSAGE),
                      world.serverEvents.rec.named("onClientHackSuspected"))
        self.assertEqual(world.server.getClientHostIDs(), [idh])

    def test_aLanAddressThatIsNoIpAddressIsReportedAndDisconnects(self):
        """Peers would hand it to a UDP write, which refuses hostnames."""
        world = World(self, clients=2)
        world.join()
        cheater, _honest = world.clients
        idc, idh = world.ids
        cheater._engine._connection.sendMessage("LAN_ADDRESS",
                                        address={"host": "localhost", "port": 9})
        self.assertTrue(world.net.runUntil(
            lambda: cheater.events.rec.count("onLeaveServer") == 1, 5))
        self.assertIn((idc, HackKind.BAD_MESSAGE),
                      world.serverEvents.rec.named("onClientHackSuspected"))
        self.assertEqual(world.server.getClientHostIDs(), [idh])

    def test_relayLimitsThatWouldBlockEverythingAreRefused(self):
        self.assertRaises(ValueError, NetServer, None, VERSION, relayFramesPerSecond=0.5)
        self.assertRaises(ValueError, NetServer, None, VERSION, relayBytesPerSecond=100)


class RelayedPeerFrameTests(SynchronousTestCase):
    def test_sessionFrameShorterThanItsEpochIsDroppedAndTheReceiverStaysConnected(self):
        """A member relays reliably (over TCP) a frame too short to hold an epoch."""
        world = World(self, clients=2)
        a, b, ida, idb = world.relayedPair()
        rejected = b._engine.peerLinks.rejectedDatagrams
        for short in (b"", b"\x00\x00\x01"):
            a._engine.sendToServerTcp(relay.encodeTcpRelayRequest(
                [idb], relay.FLAG_RELIABLE | relay.FLAG_SESSION, short))
        world.net.advance(1)
        self.assertEqual(b._engine.peerLinks.rejectedDatagrams - rejected, 2)
        self.assertEqual(b.events.rec.count("onLeaveServer"), 0)
        a.send(idb, b"still heard")
        self.assertTrue(world.net.runUntil(
            lambda: b.events.messagesFrom(ida) == [b"still heard"], 2))

    def test_forgedOrReplayedPeerFrameFromTheServerAddressDeliversNothing(self):
        world = World(self, clients=2)
        a, b, ida, idb = world.relayedPair()
        frames = []
        original = b._engine.peerLinks.relayedFrame

        def capture(sender, payload):
            frames.append((sender, payload))
            return original(sender, payload)
        b._engine.peerLinks.relayedFrame = capture
        a.send(idb, b"genuine", reliable=False)
        self.assertTrue(world.net.runUntil(lambda: b.events.messagesFrom(ida), 2))
        _sender, payload = frames[-1]
        protocol = b._engine._udpPort.protocol
        serverAddress = b._engine.serverUdpAddress
        tampered = bytearray(payload)
        tampered[-1] ^= 1
        rejected = b._engine.peerLinks.rejectedDatagrams
        for forged in (bytes(tampered), payload):            # damaged, then replayed
            protocol.datagramReceived(
                relay.encodeUdpPeerFrame(ida, relay.FLAG_SESSION, forged), serverAddress)
        world.net.advance(1)
        self.assertEqual(b.events.messagesFrom(ida), [b"genuine"])
        self.assertEqual(b._engine.peerLinks.rejectedDatagrams - rejected, 2)
