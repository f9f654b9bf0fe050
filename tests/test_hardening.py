"""Hardening: what one malicious player (or a buggy login check) can do to the
server and to everyone else, attack by attack (issue #13's findings).

Each attack runs beside an honest pair exchanging reliable messages through
the relay; the pair must lose nothing, stay fast, and a fresh client must
still join. Deterministic, in the memory network (trial and pytest); the
slow consumer, which needs real socket buffers, is in test_hardening_loopback.
"""

import struct
from typing import ClassVar

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import ConnectionRefusedByServer, NetClient, ServerUdpState
from proud_twisted._crypto.datagrams import CLIENT_DATAGRAM_HEADER, sealDatagram
from proud_twisted.constants import ErrorType, HackKind, JoinRefusal
from proud_twisted.server.engine import DEPARTED_GRACE
from proud_twisted.wire import relay
from proud_twisted.wire.datagrams import encodeDatagram
from tests.support import RecordingClientEvents
from tests.test_security import SERVER_IP, VERSION, World

HONEST_INTERVAL = 0.01
HONEST_P99_BOUND = 0.1      # seconds, on 10 ms links: a few round trips at most
VICTIM = ("198.51.100.200", 4444)


class HonestPair:
    """Two clients in a relayed group sending each other a timestamped
    reliable message every HONEST_INTERVAL seconds, both ways."""

    def __init__(self, world):
        self.world = world
        self.clients = world.clients[:2]
        self.sent = dict.fromkeys(self.clients, 0)
        self.latencies = []
        self.loops = []
        clock = world.net.clock
        for client in self.clients:
            def stamped(sender, payload, context, original=client.events.onReceiveUserMessage):
                if payload.endswith(b"honest"):
                    sentAt, = struct.unpack_from("!d", payload)
                    self.latencies.append(clock.seconds() - sentAt)
                original(sender, payload, context)
            client.events.onReceiveUserMessage = stamped

    def start(self):
        a, b = self.clients
        for me, peer in ((a, b), (b, a)):
            loop = task.LoopingCall(self._send, me, peer)
            loop.clock = self.world.net.clock
            loop.start(HONEST_INTERVAL)
            self.loops.append(loop)

    def _send(self, me, peer):
        now = self.world.net.clock.seconds()
        me.send(peer.getLocalHostID(), struct.pack("!d", now) + b"honest")
        self.sent[me] += 1

    def check(self, testCase):
        """Run a second more, stop, let the last messages land, and check
        none was lost or slow."""
        self.world.net.advance(1)
        for loop in self.loops:
            loop.stop()
        self.world.net.advance(2)
        a, b = self.clients
        for me, peer in ((a, b), (b, a)):
            testCase.assertEqual(len(me.events.messagesFrom(peer.getLocalHostID())),
                                 self.sent[peer])
        latencies = sorted(self.latencies)
        testCase.assertGreater(len(latencies), 10)
        testCase.assertLess(latencies[int(len(latencies) * 0.99) - 1], HONEST_P99_BOUND)


class AttackTestCase(SynchronousTestCase):
    """A world of a server, an honest pair (clients 0 and 1) and attackers."""

    clientCount = 3
    serverOptions = None

    def setUp(self):
        self.world = World(self, clients=self.clientCount, serverOptions=self.serverOptions)
        self.world.join()
        self.server = self.world.server
        self.ids = self.world.ids
        self.honestGroup = self.server.createP2PGroup(self.ids[:2], allowDirectP2P=False)
        self.world.net.runUntil(lambda: self.world.serverEvents.rec.count(
            "onP2PGroupJoinMemberAckComplete") >= 2, 5)
        self.pair = HonestPair(self.world)
        self.pair.start()

    def assertOthersUnharmed(self):
        """The honest pair lost nothing and stayed fast; a fresh client joins."""
        self.pair.check(self)
        host = self.world.net.addHost("198.51.100.99")
        fresh = NetClient(RecordingClientEvents(self.world.net.clock), reactor=host)
        joined = fresh.connect(SERVER_IP, 9000, VERSION)
        self.assertTrue(self.world.net.runUntil(lambda: joined.called, 10))
        self.assertIsInstance(joined.result, int)
        fresh.disconnect(linger=0)
        self.world.net.advance(1)

    def hackReports(self, hostID, kind):
        return [e for e in self.world.serverEvents.rec.named("onClientHackSuspected")
                if e == (hostID, kind)]


class LoginFailsClosedTests(SynchronousTestCase):
    """Finding 1: a login check that raises, fails or hangs never admits."""

    def joinWith(self, onConnectionRequest, clients=1, **serverOptions):
        world = World(self, clients=clients, serverOptions=serverOptions)
        world.serverEvents.onConnectionRequest = onConnectionRequest
        world.exceptions = []
        world.serverEvents.onException = world.exceptions.append
        world.started = world.net.clock.seconds()
        joins = [c.connect(SERVER_IP, 9000, VERSION, b"let me in") for c in world.clients]
        self.assertTrue(world.net.runUntil(lambda: all(d.called for d in joins), 30))
        self.assertEqual(world.server.getClientHostIDs(), [])
        for other in joins[1:]:
            self.failureResultOf(other, ConnectionRefusedByServer)
        return world, joins[0]

    def assertRefused(self, d, reason):
        failure = self.failureResultOf(d, ConnectionRefusedByServer)
        self.assertIs(failure.value.reason, reason)

    def test_aRaisingLoginCheckRefuses(self):
        def broken(address, userData):
            raise RuntimeError("database bug")
        world, d = self.joinWith(broken, clients=3)
        self.assertRefused(d, JoinRefusal.LOGIN_ERROR)
        self.assertEqual(world.server.stats.loginErrors, 3)
        self.assertEqual(world.serverEvents.rec.count("onClientJoin"), 0)
        # Reported once (onException and a log line with the traceback), counted each time.
        self.assertEqual([f.type for f in world.exceptions], [RuntimeError])

    def test_aFailedDeferredRefuses(self):
        _world, d = self.joinWith(lambda address, userData: defer.fail(ValueError("no")))
        self.assertRefused(d, JoinRefusal.LOGIN_ERROR)
        self.flushLoggedErrors(ValueError)

    def test_aLoginThatNeverAnswersIsRefusedAtTheLoginTimeout(self):
        world, d = self.joinWith(lambda address, userData: defer.Deferred(), loginTimeout=2)
        self.assertRefused(d, JoinRefusal.LOGIN_TIMEOUT)
        self.assertEqual(world.server.stats.loginTimeouts, 1)
        self.assertTrue(2 <= world.net.clock.seconds() - world.started < 2.5)

    def test_anAnswerThatIsNoAnswerRefuses(self):
        _world, d = self.joinWith(lambda address, userData: "yes")
        self.assertRefused(d, JoinRefusal.LOGIN_ERROR)
        self.flushLoggedErrors(TypeError)

    def test_anAsynchronousLoginAdmitsWithItsReply(self):
        answers = []

        def later(address, userData):
            answers.append(defer.Deferred())
            return answers[-1]
        world = World(self, clients=1)
        world.serverEvents.onConnectionRequest = later
        d = world.clients[0].connect(SERVER_IP, 9000, VERSION, b"token")
        self.assertTrue(world.net.runUntil(lambda: answers, 5))
        world.net.advance(1)
        self.assertFalse(d.called)
        answers[0].callback((True, b"welcome"))
        self.assertTrue(world.net.runUntil(lambda: d.called, 5))
        self.assertEqual(world.server.getClientHostIDs(), [self.successResultOf(d)])
        self.assertEqual(world.clients[0].events.rec.named("onJoinServerComplete")[-1],
                         (ErrorType.OK, b"welcome"))

    def test_aClientGoneBeforeTheAnswerIsNeverAdmitted(self):
        answers = []

        def later(address, userData):
            answers.append(defer.Deferred(lambda d: answers.append("cancelled")))
            return answers[0]
        world = World(self, clients=1)
        world.serverEvents.onConnectionRequest = later
        d = world.clients[0].connect(SERVER_IP, 9000, VERSION)
        self.assertTrue(world.net.runUntil(lambda: answers, 5))
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertTrue(world.net.runUntil(lambda: "cancelled" in answers, 5))
        self.assertEqual(world.server.getClientHostIDs(), [])
        self.assertEqual(world.server.getConnectionCount(), 0)


class AmplificationTests(AttackTestCase):
    """Finding 4: a UDP hello with a forged source makes the server send that
    address no more than it received, and never adopt it."""

    def forgedHello(self, attacker):
        hello = encodeDatagram("UDP_HELLO", hostID=attacker.getLocalHostID(),
                               token=attacker._engine._udpToken, padding=bytes(64))
        return sealDatagram(attacker._engine.udpChannel, hello, CLIENT_DATAGRAM_HEADER)

    def test_forgedSourceGetsNoMoreThanItSentAndIsNeverAdopted(self):
        attacker = self.world.clients[2]
        attackerID = self.ids[2]
        sentToVictim = []
        send = self.server._engine._udp.send

        def capture(data, addr):
            if addr == VICTIM:
                sentToVictim.append(len(data))
            return send(data, addr)
        self.server._engine._udp.send = capture
        self.server.createP2PGroup([self.ids[0], attackerID])
        received = 0
        for _i in range(50):
            hello = self.forgedHello(attacker)
            received += len(hello)
            self.server._engine._udp.datagramReceived(hello, VICTIM)
            self.world.clients[0].send(attackerID, b"x" * 1000, reliable=False)
            self.world.clients[0].send(attackerID, b"y" * 1000)
            self.world.net.advance(0.05)
        self.assertLessEqual(sum(sentToVictim), received)
        self.assertLessEqual(len(sentToVictim), 50)           # one challenge a hello
        self.assertNotEqual(self.server.getClientInfo(attackerID).udpAddress, VICTIM)
        self.assertEqual(attacker.getServerUdpState(), ServerUdpState.CONFIRMED)
        self.assertOthersUnharmed()

    def test_aClientWhoseAddressChangesIsTakenOnceItAnswers(self):
        client = self.world.clients[2]
        before = self.server.getClientInfo(self.ids[2]).udpAddress
        newAddress = (before[0], before[1] + 1)
        hello = self.forgedHello(client)
        self.server._engine._udp.datagramReceived(hello, newAddress)
        self.assertEqual(self.server.getClientInfo(self.ids[2]).udpAddress, before)
        challenge = self.world.serverConnection(self.ids[2]).udpChallenge
        self.assertEqual(challenge[0], newAddress)
        answer = encodeDatagram("UDP_CHALLENGE_RESPONSE", hostID=self.ids[2],
                                challenge=challenge[1])
        wrong = encodeDatagram("UDP_CHALLENGE_RESPONSE", hostID=self.ids[2],
                               challenge=bytes(16))
        for data, addr in ((answer, before), (wrong, newAddress)):    # neither counts
            self.server._engine._udp.datagramReceived(
                sealDatagram(client._engine.udpChannel, data, CLIENT_DATAGRAM_HEADER), addr)
        self.assertEqual(self.server.getClientInfo(self.ids[2]).udpAddress, before)
        self.server._engine._udp.datagramReceived(
            sealDatagram(client._engine.udpChannel, answer, CLIENT_DATAGRAM_HEADER), newAddress)
        self.assertEqual(self.server.getClientInfo(self.ids[2]).udpAddress, newAddress)
        self.assertOthersUnharmed()


class RejectedRelayTests(AttackTestCase):
    """Finding 5: refused relay targets cost tokens, are capped per request
    and are warned about in aggregate."""

    serverOptions: ClassVar[dict] = {"relayFramesPerSecond": 1000}

    def strangerRequest(self, count, start=50000):
        return relay.encodeTcpRelayRequest(range(start, start + count), 0, b"spam")

    def test_refusedTargetsCostTokensAndWarningsAreAggregated(self):
        attacker = self.world.clients[2]
        for _ in range(20):
            attacker._engine._connection.sendBody(self.strangerRequest(500))
        self.world.net.advance(0.5)
        stats = self.server.stats
        # 1,000 frames of budget (one second's burst) for 10,000 targets.
        self.assertLessEqual(stats.relayRejected, 1000 + 0.5 * 1000 + 500)
        self.assertGreater(stats.relayRateLimited, 0)
        self.assertLessEqual(self.world.serverEvents.rec.count("onWarning"), 1)
        self.assertTrue(self.hackReports(self.ids[2], HackKind.RELAY_FLOOD))
        self.assertOthersUnharmed()

    def test_tooManyTargetsInOneRequestIsAProtocolError(self):
        attacker = self.world.clients[2]
        attacker._engine._connection.sendBody(self.strangerRequest(relay.MAX_RELAY_TARGETS + 1))
        self.world.net.advance(0.5)
        self.assertNotIn(self.ids[2], self.server.getClientHostIDs())
        leave = self.world.serverEvents.rec.named("onClientLeave")[-1]
        self.assertIs(leave[1], ErrorType.PROTOCOL_ERROR)
        self.assertTrue(self.hackReports(self.ids[2], HackKind.BAD_MESSAGE))
        self.assertEqual(self.server.stats.hackSuspicions, 1)     # counted once
        self.assertOthersUnharmed()


class FalseReportTests(AttackTestCase):
    """Finding 7: honest senders are never reported."""

    clientCount = 10

    def test_framesInFlightToAPeerThatLeftAreNotReported(self):
        a = self.world.clients[2]
        group = self.server.createP2PGroup(self.ids[2:4], allowDirectP2P=False)
        self.world.net.runUntil(lambda: self.ids[3] in a.getPeerHostIDs(), 5)
        for i in range(20):
            a.send(self.ids[3], b"in flight %d" % i)
        self.world.net.advance(0.001)       # on the wire, not yet at the server
        self.server.leaveP2PGroup(self.ids[3], group)
        self.world.net.advance(2)
        self.assertEqual(self.hackReports(self.ids[2], HackKind.RELAY_NOT_ALLOWED), [])
        self.assertGreater(self.server.stats.relayToDeparted, 0)
        # Past the grace, a frame to a stranger is reported again.
        self.world.net.advance(DEPARTED_GRACE + 1)
        a._engine._connection.sendBody(relay.encodeTcpRelayRequest([self.ids[3]], 0, b"late"))
        self.world.net.advance(0.5)
        self.assertTrue(self.hackReports(self.ids[2], HackKind.RELAY_NOT_ALLOWED))
        self.assertOthersUnharmed()

    def test_aSenderOfLargeMessagesToAGroupOfTenWithinTheLimitsIsNeverFlagged(self):
        sender = self.world.clients[2]
        members = self.ids[2:]
        group = self.server.createP2PGroup(members, allowDirectP2P=False)
        self.world.net.runUntil(lambda: len(sender.getPeerHostIDs()) >= len(members) - 1, 10)
        message = bytes(65536)
        # 64 KiB to 9 members 6 times a second: 3.4 MiB/s, 3,200 frames/s of
        # relay, within the defaults (8 MiB/s, 10,000 frames/s).
        for _ in range(12):
            sender.send(group, message)
            self.world.net.advance(1 / 6)
        self.world.net.advance(3)
        self.assertEqual(self.hackReports(self.ids[2], HackKind.RELAY_FLOOD), [])
        self.assertEqual(self.server.stats.relayRateLimited, 0)
        for member in self.world.clients[3:]:
            self.assertEqual(len(member.events.messagesFrom(self.ids[2])), 12)
        self.assertOthersUnharmed()


class ClosingTests(AttackTestCase):
    """Finding 3 (its table half): a closed client leaves every table at once."""

    def test_closeConnectionTakesTheClientOutAtOnce(self):
        victimID = self.ids[2]
        self.server.createP2PGroup([self.ids[0], victimID])
        self.world.net.advance(0.5)
        self.server.closeConnection(victimID)
        self.assertNotIn(victimID, self.server.getClientHostIDs())
        leave = self.world.serverEvents.rec.named("onClientLeave")[-1]
        self.assertEqual((leave[0].hostID, leave[1]), (victimID, ErrorType.KICKED))
        self.assertTrue(all(victimID not in self.server.getP2PGroupInfo(g).members
                            for g in self.server.getP2PGroups()))
        self.assertOthersUnharmed()

    def test_goodbyeTakesTheClientOutAtOnceAndTheConnectionCloses(self):
        client = self.world.clients[2]
        client._engine._connection.sendMessage("GOODBYE", comment=b"bye")
        self.world.net.advance(0.1)
        self.assertNotIn(self.ids[2], self.server.getClientHostIDs())
        self.assertTrue(self.world.net.runUntil(
            lambda: self.server.getConnectionCount() == 2, self.server._engine.closeLinger + 2))
        self.assertOthersUnharmed()


class AcceptPathTests(SynchronousTestCase):
    """Finding 9: accepting a connection does not scan the others."""

    def test_acceptingDoesNotScanConnectionsAndTheCountStaysRight(self):
        world = World(self, clients=3, serverOptions={"maxUnauthenticated": 2})

        class NoScan(set):
            def __iter__(self):
                raise AssertionError("the accept path scanned every connection")
        world.server._engine._connections = NoScan(world.server._engine._connections)
        first = [c.connect(SERVER_IP, 9000, VERSION) for c in world.clients[:2]]
        self.assertTrue(world.net.runUntil(lambda: all(d.called for d in first), 10))
        self.assertEqual(world.server._engine._unauthenticated, 0)
        world.server._engine._connections = set(world.server._engine._connections)
        self.assertEqual(world.server.getConnectionCount(), 2)

    def test_overTheLimitTheClientIsToldTheServerIsFull(self):
        world = World(self, clients=2, serverOptions={"maxUnauthenticated": 1,
                                                      "handshakeTimeout": 5})
        # A connection that never speaks holds the one unauthenticated slot.
        world.hosts[0].connectTCP(SERVER_IP, 9000, _SilentFactory())
        world.net.advance(0.5)
        d = world.clients[1].connect(SERVER_IP, 9000, VERSION)
        self.assertTrue(world.net.runUntil(lambda: d.called, 2))
        self.assertIs(self.failureResultOf(d, ConnectionRefusedByServer).value.reason,
                      JoinRefusal.SERVER_FULL)
        self.assertEqual(world.server.stats.unauthenticatedRefused, 1)


class _SilentFactory:
    def doStart(self):
        pass

    def doStop(self):
        pass

    def startedConnecting(self, connector):
        pass

    def buildProtocol(self, addr):
        from twisted.internet.protocol import Protocol
        return Protocol()

    def clientConnectionLost(self, connector, reason):
        pass

    def clientConnectionFailed(self, connector, reason):
        pass


class HonestClientsStayWithinTheTargetCapTests(SynchronousTestCase):
    def test_aTurnOfTinyFramesForManyPeersIsSplitUnderTheCap(self):
        from proud_twisted.client.relaybatch import TCP_BUNDLE_LIMIT, RelayBatcher
        pending = [(target, b"ack") for target in range(3000)]
        bundles = RelayBatcher._split(pending, TCP_BUNDLE_LIMIT)
        self.assertEqual([e for bundle in bundles for e in bundle], pending)
        self.assertLessEqual(max(map(len, bundles)), relay.MAX_RELAY_TARGETS)

    def test_aSendToMoreStrangersThanTheCapIsSplitAndCostsNoDisconnect(self):
        world = World(self, clients=1)
        world.join()
        client, = world.clients
        client.send(list(range(50000, 50000 + 2 * relay.MAX_RELAY_TARGETS + 1)), b"x")
        world.net.advance(1)
        self.assertEqual(world.server.stats.relayRejected, 2 * relay.MAX_RELAY_TARGETS + 1)
        self.assertEqual(world.server.getClientHostIDs(), world.ids)


class FragmentExhaustionTests(AttackTestCase):
    """Finding 6, at the server: the clients' sessions with it share one
    receive budget, and a client that leaves gives its share back."""

    clientCount = 5
    serverOptions: ClassVar[dict] = {"receiveBudget": 300_000}

    def test_partialMessagesFromManyClientsStayWithinTheServerBudget(self):
        from proud_twisted.rudp import frames as F
        attackers = self.world.clients[2:]
        for attacker in attackers:
            for start in range(0, 3000, 100):       # reliable fragments after a gap
                batch = [F.packFragment(F.FT_RELIABLE_FRAGMENT, 0, 1 + i, b"xy", 65536,
                                        1000 + i) for i in range(start, start + 100)]
                attacker._engine._serverTransmit(F.encodeDatagram(start // 100, batch, False))
            self.world.net.advance(0.05)
        budget = self.server._engine.receiveBudget
        self.assertGreater(budget.usedBytes, 0.5 * budget.totalBytes)
        self.assertLessEqual(budget.usedBytes, budget.totalBytes)
        for hostID in self.ids[2:]:
            self.server.closeConnection(hostID)
        self.assertEqual(budget.usedBytes, 0)
        self.assertOthersUnharmed()
