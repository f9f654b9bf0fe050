"""Client hardening (issue #13): a join that always ends, group sends that are
all or nothing, per-peer queues that stay bounded.

Deterministic, in the memory network (trial and pytest).
"""

import dataclasses
import uuid

from twisted.internet.defer import CancelledError
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import NetClient, NetServer, ServerUdpState
from proud_twisted._glue.sessiondriver import DEFAULT_SESSION_CONFIG
from proud_twisted.client.peerlinks import EARLY_FRAMES_KEPT
from proud_twisted.constants import ErrorType, JoinRefusal
from proud_twisted.errors import (
    ConnectionRefusedByServer,
    JoinCancelled,
    JoinFailed,
    JoinTimeout,
    SendQueueFull,
)
from proud_twisted.rudp import DeliveryMode
from proud_twisted.testing import LinkConditions, MemoryNetwork
from proud_twisted.wire.framing import encodeFrame
from proud_twisted.wire.messages import encodeMessage
from tests.support import RecordingClientEvents, RecordingServerEvents, stopMemoryWorld

VERSION = uuid.UUID("0d5b8f0e-7c1a-4e62-9b3d-2f6a1c8e4b90")
SERVER_IP = "203.0.113.1"
CLIENT_IP = "198.51.100.10"
PORT = 9000
JOIN_TIMEOUT = 2.0


# Servers that misbehave during the join

class _Silent(Protocol):
    """Accepts the connection and never says a word."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason) -> None:
        self.lost = True


class _ClosesAtOnce(_Silent):
    def connectionMade(self) -> None:
        self.transport.loseConnection()


class _ClosesInTheHandshake(_Silent):
    """Closes once the client's first handshake bytes arrive."""

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if len(self.received) >= 8:
            self.transport.loseConnection()


class _Refuses(_Silent):
    """Answers the first bytes with a JOIN_REFUSED (in the clear), then closes."""

    code = int(JoinRefusal.REFUSED_BY_APPLICATION)

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if not self.transport.disconnecting:
            self.transport.write(encodeFrame(encodeMessage(
                "JOIN_REFUSED", reason=self.code, reply=b"go away")))
            self.transport.loseConnection()


class _Factory(Factory):
    def __init__(self, protocol) -> None:
        self.protocol = protocol
        self.built = []

    def buildProtocol(self, addr):
        p = self.protocol()
        p.factory = self
        self.built.append(p)
        return p


class JoinWorld:
    """One client host and one server host; the server is whatever a test listens with."""

    def __init__(self, testCase) -> None:
        self.testCase = testCase
        self.net = MemoryNetwork(seed=3)
        self.net.setDefaultConditions(LinkConditions(latency=0.01))
        self.serverHost = self.net.addHost(SERVER_IP)
        self.clientHost = self.net.addHost(CLIENT_IP)
        self.events = RecordingClientEvents(self.net.clock)
        self.client = NetClient(self.events, reactor=self.clientHost)
        self.servers = []
        self.ports = []
        testCase.addCleanup(self.stop)

    def listen(self, protocol, port: int = PORT) -> _Factory:
        factory = _Factory(protocol)
        self.ports.append(self.serverHost.listenTCP(port, factory))
        return factory

    def netServer(self, port: int = PORT, **options) -> NetServer:
        events = RecordingServerEvents(self.net.clock, accept=options.pop("accept", True))
        server = NetServer(events, VERSION, tcpPort=port, udpPort=port,
                           reactor=self.serverHost, **options)
        server.startService()
        self.servers.append(server)
        return server

    def connect(self, host: str = SERVER_IP, port: int = PORT) -> "Outcome":
        return Outcome(self.client.connect(host, port, VERSION, timeout=JOIN_TIMEOUT))

    def stop(self) -> None:
        self.client.disconnect(linger=0)
        self.net.advance(1)
        for server in self.servers:
            server.stopService()
        for port in self.ports:
            port.stopListening()
        self.net.advance(1)


class Outcome:
    """Every result a connect() Deferred delivers (there must be one)."""

    def __init__(self, d) -> None:
        self.deferred = d
        self.results = []
        d.addBoth(self._record)

    def _record(self, result) -> None:
        self.results.append(result)     # a failure is consumed: none goes unhandled

    @property
    def fired(self) -> bool:
        return bool(self.results)


class JoinEndsTests(SynchronousTestCase):
    """connect()'s Deferred fires exactly once in every path, and so does
    onJoinServerComplete; afterwards connect() works again."""

    def failsOnce(self, world, outcome, error, kind=None, within: float = 1.0) -> Failure:
        """Run until C{outcome} fired; check it failed with C{error}, once,
        even well past the join timeout, and that connect() works again."""
        self.assertTrue(world.net.runUntil(lambda: outcome.fired, within),
                        "connect() never fired")
        world.net.advance(3 * JOIN_TIMEOUT)
        self.assertEqual(len(outcome.results), 1)
        failure, = outcome.results
        self.assertIsInstance(failure, Failure)
        failure.trap(error)
        joins = world.events.rec.named("onJoinServerComplete")
        self.assertEqual(len(joins), 1)
        if kind is not None:
            self.assertEqual(joins[0][0], kind)
        self.assertEqual(world.client.getLocalHostID(), 0)
        self.assertIsNone(world.client._engine._joinTimer)
        self.joinsAgain(world)
        return failure

    def joinsAgain(self, world) -> None:
        """A real server on another port takes the next connect()."""
        world.netServer(port=PORT + 1)
        again = world.connect(port=PORT + 1)
        self.assertTrue(world.net.runUntil(lambda: again.fired, 5))
        self.assertEqual(again.results, [world.client.getLocalHostID()])
        self.assertEqual(world.events.rec.named("onJoinServerComplete")[-1][0], ErrorType.OK)

    # The server closes before the join

    def test_serverAtItsLimitOfUnauthenticatedConnections(self):
        """The case in the issue: the server aborts the connection at once
        (maxUnauthenticated=0); this used to leave the Deferred unfired forever."""
        world = JoinWorld(self)
        world.netServer(maxUnauthenticated=0)
        outcome = world.connect()
        failure = self.failsOnce(world, outcome, JoinFailed)
        # The server may just close, or say it is full first.
        kind = world.events.rec.named("onJoinServerComplete")[0][0]
        if failure.check(ConnectionRefusedByServer):
            self.assertIs(failure.value.reason, JoinRefusal.SERVER_FULL)
            self.assertEqual(kind, ErrorType.SERVER_FULL)
        else:
            self.assertIn("closed before joining", failure.getErrorMessage())
            self.assertEqual(kind, ErrorType.DISCONNECT_FROM_REMOTE)

    def test_serverClosesAtOnce(self):
        world = JoinWorld(self)
        world.listen(_ClosesAtOnce)
        self.failsOnce(world, world.connect(), JoinFailed, ErrorType.DISCONNECT_FROM_REMOTE)

    def test_serverClosesInTheHandshake(self):
        world = JoinWorld(self)
        factory = world.listen(_ClosesInTheHandshake)
        self.failsOnce(world, world.connect(), JoinFailed, ErrorType.DISCONNECT_FROM_REMOTE)
        self.assertTrue(factory.built[0].received)

    def test_connectionLostAfterTheHandshakeBeforeTheJoin(self):
        world = JoinWorld(self)
        world.netServer()
        outcome = world.connect()
        # The handshake is done and HELLO is on its way; the link dies.
        self.assertTrue(world.net.runUntil(lambda: world.client._engine._connection is not None, 1))
        world.net.disconnectHost(world.clientHost)
        self.failsOnce(world, outcome, JoinFailed)

    # The server says no

    def test_refusalReasons(self):
        cases = [
            (JoinRefusal.LOGIN_ERROR, JoinRefusal.LOGIN_ERROR, ErrorType.LOGIN_FAILED,
             "login check failed"),
            (JoinRefusal.LOGIN_TIMEOUT, JoinRefusal.LOGIN_TIMEOUT, ErrorType.LOGIN_FAILED,
             "login check timed out"),
            (JoinRefusal.SERVER_FULL, JoinRefusal.SERVER_FULL, ErrorType.SERVER_FULL,
             "server is full"),
            (JoinRefusal.REFUSED_BY_APPLICATION, JoinRefusal.REFUSED_BY_APPLICATION,
             ErrorType.CONNECTION_REFUSED, "refused by the server application"),
            # A code this client does not know: refused by the application.
            (200, JoinRefusal.REFUSED_BY_APPLICATION, ErrorType.CONNECTION_REFUSED,
             "refused by the server application"),
        ]
        for code, reason, kind, words in cases:
            world = JoinWorld(self)
            protocol = type("Refuses", (_Refuses,), {"code": int(code)})
            world.listen(protocol)
            failure = self.failsOnce(world, world.connect(), ConnectionRefusedByServer, kind)
            self.assertIs(failure.value.reason, reason)
            self.assertEqual(failure.value.reply, b"go away")
            self.assertIn(words, failure.getErrorMessage())
            self.assertEqual(world.events.rec.named("onJoinServerComplete")[0],
                             (kind, b"go away"))

    def test_refusedByARealServer(self):
        world = JoinWorld(self)
        world.netServer(accept=False)
        failure = self.failsOnce(world, world.connect(), ConnectionRefusedByServer,
                                 ErrorType.CONNECTION_REFUSED)
        self.assertIs(failure.value.reason, JoinRefusal.REFUSED_BY_APPLICATION)

    def test_refusalStaysConstructibleAsBefore(self):
        error = ConnectionRefusedByServer(b"no")
        self.assertIs(error.reason, JoinRefusal.REFUSED_BY_APPLICATION)
        self.assertEqual(error.reply, b"no")
        self.assertIn("b'no'", str(error))
        self.assertIsInstance(error, JoinFailed)

    # Nobody there, or nobody answering

    def test_tcpConnectionRefused(self):
        world = JoinWorld(self)
        failure = self.failsOnce(world, world.connect(), JoinFailed, ErrorType.CONNECTION_LOST)
        self.assertIn("cannot connect", failure.getErrorMessage())

    def test_nameResolvesNowhere(self):
        world = JoinWorld(self)
        failure = self.failsOnce(world, world.connect(host="game.invalid"), JoinFailed,
                                 ErrorType.CONNECTION_LOST)
        self.assertIn("cannot connect", failure.getErrorMessage())

    def test_serverNeverAnswers(self):
        world = JoinWorld(self)
        factory = world.listen(_Silent)
        outcome = world.connect()
        world.net.advance(JOIN_TIMEOUT - 0.1)
        self.assertFalse(outcome.fired)
        self.failsOnce(world, outcome, JoinTimeout, ErrorType.TIMEOUT)
        self.assertTrue(factory.built[0].lost)     # the connection was dropped

    def test_connectionAttemptHeldUntilTimeout(self):
        world = JoinWorld(self)
        world.netServer()
        world.net.partition(world.clientHost, world.serverHost)
        outcome = world.connect()
        self.assertTrue(world.net.runUntil(lambda: outcome.fired, JOIN_TIMEOUT + 0.5))
        world.net.heal(world.clientHost, world.serverHost)
        self.failsOnce(world, outcome, JoinTimeout, ErrorType.TIMEOUT)

    def test_acceptanceThatArrivesAfterTheTimeoutIsIgnored(self):
        world = JoinWorld(self)
        world.netServer()
        outcome = world.connect()
        self.assertTrue(world.net.runUntil(lambda: world.client._engine._connection is not None, 1))
        # The server's answer is held on the way until after the timeout.
        world.net.setConditions(world.serverHost, world.clientHost,
                                LinkConditions(latency=0.01, blocked=True))
        self.assertTrue(world.net.runUntil(lambda: outcome.fired, JOIN_TIMEOUT + 0.5))
        world.net.setConditions(world.serverHost, world.clientHost,
                                LinkConditions(latency=0.01))
        self.failsOnce(world, outcome, JoinTimeout, ErrorType.TIMEOUT)

    # Given up here

    def test_cancelWhileConnecting(self):
        world = JoinWorld(self)
        world.netServer()
        outcome = world.connect()
        outcome.deferred.cancel()
        failure = self.failsOnce(world, outcome, CancelledError,
                                 ErrorType.DISCONNECT_FROM_LOCAL, within=0)
        self.assertIsInstance(failure.value, JoinCancelled)

    def test_cancelInTheHandshake(self):
        world = JoinWorld(self)
        factory = world.listen(_Silent)
        outcome = world.connect()
        self.assertTrue(world.net.runUntil(lambda: factory.built and factory.built[0].received, 1))
        outcome.deferred.cancel()
        self.failsOnce(world, outcome, CancelledError, ErrorType.DISCONNECT_FROM_LOCAL, within=0)
        self.assertTrue(factory.built[0].lost)     # the connection was closed

    def test_cancelAfterTheHandshake(self):
        world = JoinWorld(self)
        server = world.netServer()
        outcome = world.connect()
        self.assertTrue(world.net.runUntil(lambda: world.client._engine._connection is not None, 1))
        outcome.deferred.cancel()
        self.failsOnce(world, outcome, JoinCancelled, ErrorType.DISCONNECT_FROM_LOCAL, within=0)
        # The server saw that connection go, and has just the new client.
        self.assertEqual(len(server._engine._connections), 0)

    def test_cancelAfterTheJoinChangesNothing(self):
        world = JoinWorld(self)
        world.netServer()
        outcome = world.connect()
        self.assertTrue(world.net.runUntil(lambda: outcome.fired, 5))
        outcome.deferred.cancel()
        world.net.advance(3 * JOIN_TIMEOUT)
        self.assertEqual(outcome.results, [world.client.getLocalHostID()])
        self.assertEqual(world.events.rec.count("onJoinServerComplete"), 1)
        self.assertEqual(world.events.rec.count("onLeaveServer"), 0)

    def test_disconnectWhileJoining(self):
        world = JoinWorld(self)
        factory = world.listen(_Silent)
        outcome = world.connect()
        self.assertTrue(world.net.runUntil(lambda: factory.built and factory.built[0].received, 1))
        closed = world.client.disconnect()
        self.assertTrue(closed.called)
        failure = self.failsOnce(world, outcome, JoinFailed, ErrorType.DISCONNECT_FROM_LOCAL,
                                 within=0)
        self.assertIsInstance(failure.value, CancelledError)
        self.assertTrue(factory.built[0].lost)

    def test_disconnectBeforeTheTcpConnection(self):
        world = JoinWorld(self)
        world.netServer()
        outcome = world.connect()
        world.client.disconnect()
        self.failsOnce(world, outcome, JoinCancelled, ErrorType.DISCONNECT_FROM_LOCAL, within=0)

    def test_connectAgainFromTheErrback(self):
        """A retry from the errback starts cleanly; the old connection,
        still closing, does not disturb it."""
        world = JoinWorld(self)
        world.listen(_Refuses)
        world.netServer(port=PORT + 1)
        retries = []

        def retry(failure):
            failure.trap(ConnectionRefusedByServer)
            retries.append(Outcome(world.client.connect(SERVER_IP, PORT + 1, VERSION,
                                                        timeout=JOIN_TIMEOUT)))

        first = world.client.connect(SERVER_IP, PORT, VERSION, timeout=JOIN_TIMEOUT)
        first.addErrback(retry)
        self.assertTrue(world.net.runUntil(lambda: retries and retries[0].fired, 5))
        world.net.advance(3 * JOIN_TIMEOUT)
        self.assertEqual(retries[0].results, [world.client.getLocalHostID()])
        self.assertEqual([kind for kind, _ in world.events.rec.named("onJoinServerComplete")],
                         [ErrorType.CONNECTION_REFUSED, ErrorType.OK])
        self.assertEqual(world.client.getServerUdpState(), ServerUdpState.CONFIRMED)

    def test_connectWhileConnectingIsRefused(self):
        world = JoinWorld(self)
        world.netServer()
        outcome = world.connect()
        self.assertRaises(JoinFailed, world.client.connect, SERVER_IP, PORT, VERSION)
        self.assertTrue(world.net.runUntil(lambda: outcome.fired, 5))
        self.assertEqual(outcome.results, [world.client.getLocalHostID()])


class GroupWorld:
    """A server and three relayed clients in one group, with small send queues."""

    QUEUE = 20_500

    def __init__(self, testCase) -> None:
        self.net = MemoryNetwork(seed=5)
        self.net.setDefaultConditions(LinkConditions(latency=0.01))
        self.serverHost = self.net.addHost(SERVER_IP)
        self.serverEvents = RecordingServerEvents(self.net.clock)
        self.server = NetServer(self.serverEvents, VERSION, tcpPort=PORT, udpPort=PORT,
                                reactor=self.serverHost)
        self.server.startService()
        config = dataclasses.replace(DEFAULT_SESSION_CONFIG, maxSendQueueBytes=self.QUEUE)
        self.hosts = [self.net.addHost(f"198.51.100.{10 + i}") for i in range(3)]
        self.clients = [NetClient(RecordingClientEvents(self.net.clock), reactor=host,
                                  sessionConfig=config) for host in self.hosts]
        testCase.addCleanup(self.stop)
        joins = [c.connect(SERVER_IP, PORT, VERSION) for c in self.clients]
        assert self.net.runUntil(lambda: all(d.called for d in joins), 10)
        assert self.net.runUntil(lambda: all(
            c.getServerUdpState() is ServerUdpState.CONFIRMED for c in self.clients), 10)
        self.ids = [c.getLocalHostID() for c in self.clients]
        self.group = self.server.createP2PGroup(self.ids, allowDirectP2P=False)
        assert self.net.runUntil(lambda: self.serverEvents.rec.count(
            "onP2PGroupJoinMemberAckComplete") >= 3, 10)
        a = self.clients[0]
        assert self.net.runUntil(lambda: all(
            a._engine.peerTable.peers[i].driver is not None for i in self.ids[1:]), 10)

    def received(self, client: int, sender: int = 0) -> list:
        return self.clients[client].events.messagesFrom(self.ids[sender])

    def cutOff(self, client: int) -> None:
        self.net.partition(self.hosts[client], self.serverHost)

    def fillQueue(self, sender: int, receiver: int, size: int = 1000) -> int:
        """Send C{size}-byte messages until the queue is full; return how many went."""
        sent = 0
        while True:
            try:
                self.clients[sender].send(self.ids[receiver], bytes([sent % 256]) * size)
            except SendQueueFull:
                return sent
            sent += 1

    def stop(self) -> None:
        stopMemoryWorld(self.net, self.server, self.clients)


class GroupSendTests(SynchronousTestCase):
    """A group send reaches every member or none (finding 8)."""

    def test_aGroupSendThatDoesNotFitReachesNone(self):
        world = GroupWorld(self)
        a = world.clients[0]
        world.cutOff(2)                     # c stops acknowledging
        queued = world.fillQueue(0, 2)
        self.assertEqual(queued, world.QUEUE // 1000)
        bytesBefore = [a.getPeerInfo(i).stats.sendQueueBytes for i in world.ids[1:]]
        for reliable in (True, False):
            with self.assertRaises(SendQueueFull) as caught:
                a.send(world.group, b"G" * 1000, reliable=reliable)
            self.assertEqual(caught.exception.hostIDs, (world.ids[2],))
            self.assertIn(str(world.ids[2]), str(caught.exception))
            self.assertNotIn(str(world.ids[1]), str(caught.exception))
        self.assertEqual([a.getPeerInfo(i).stats.sendQueueBytes for i in world.ids[1:]],
                         bytesBefore)
        # Latest-only too (nothing of that channel queued to replace).
        self.assertRaises(SendQueueFull, a.send, world.group, b"L" * 1000,
                          mode=DeliveryMode.UNRELIABLE_LATEST, channel=3)
        world.net.heal(world.hosts[2], world.serverHost)
        self.assertTrue(world.net.runUntil(lambda: len(world.received(2)) >= queued, 30))
        world.net.advance(2)
        self.assertEqual(len(world.received(2)), queued)
        for member in (1, 2):
            self.assertFalse([p for p in world.received(member) if p[:1] in (b"G", b"L")])

    def test_aGroupSendThatFitsReachesAll(self):
        world = GroupWorld(self)
        a = world.clients[0]
        world.cutOff(2)
        queued = world.fillQueue(0, 2)
        a.send(world.group, b"fits")        # 500 bytes of room left with c
        self.assertTrue(world.net.runUntil(lambda: b"fits" in world.received(1), 2))
        world.net.heal(world.hosts[2], world.serverHost)
        self.assertTrue(world.net.runUntil(lambda: b"fits" in world.received(2), 30))
        self.assertEqual(len(world.received(2)), queued + 1)
        self.assertEqual(world.received(1), [b"fits"])

    def test_aSendToTheServerAndAFullPeerReachesNeither(self):
        world = GroupWorld(self)
        a = world.clients[0]
        world.cutOff(2)
        world.fillQueue(0, 2)
        self.assertRaises(SendQueueFull, a.send, [1, world.ids[1], world.ids[2]],
                          b"G" * 1000, reliable=False)
        world.net.advance(1)
        self.assertEqual(world.serverEvents.rec.count("onReceiveUserMessage"), 0)
        self.assertEqual(world.received(1), [])


class BoundedPeerQueueTests(SynchronousTestCase):
    """A peer that stops acknowledging cannot grow the client's memory
    without bound (the client half of finding 3)."""

    def test_aSilentPeerFillsItsQueueToTheBoundThenSendQueueFull(self):
        world = GroupWorld(self)
        a = world.clients[0]
        world.cutOff(2)
        refused = 0
        for _round in range(40):
            for _ in range(10):
                try:
                    a.send(world.ids[2], b"x" * 700)
                except SendQueueFull:
                    refused += 1
            world.net.advance(0.5)      # retransmissions and timeouts go on
            stats = a.getPeerInfo(world.ids[2]).stats
            self.assertLessEqual(stats.sendQueueBytes, world.QUEUE)
        self.assertGreater(refused, 350)
        # b's session, acknowledging all along, is unaffected.
        a.send(world.ids[1], b"still fine")
        self.assertTrue(world.net.runUntil(lambda: b"still fine" in world.received(1), 2))

    def test_earlyFramesAreCapped(self):
        """Relayed frames from a host not (yet) paired with us are kept, but
        only so many."""
        world = GroupWorld(self)
        links = world.clients[0]._engine.peerLinks
        for _i in range(10 * EARLY_FRAMES_KEPT):
            links.relayedFrame(999_999, b"\x00" * 1100)
        self.assertEqual(len(links._early), EARLY_FRAMES_KEPT)
