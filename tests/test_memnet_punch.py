"""Hole punching in the memory network: every pair of NAT types, forged
probes, a path that dies and heals, and the Deferred API. Deterministic."""

import itertools
import uuid
import zlib

from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import (
    HolePunchFailed,
    NetClient,
    NetServer,
    RelayReason,
    ServerUdpState,
)
from proud_twisted.constants import HolePunchPolicy
from proud_twisted.crypto import pairProbeKey
from proud_twisted.testing import LinkConditions, MemoryNetwork, NATType
from proud_twisted.wire.punch import PUNCH_ANSWER, PUNCH_PROBE, encodeControl
from tests.support import RecordingClientEvents, RecordingServerEvents, stopMemoryWorld

VERSION = uuid.UUID("4d1f3a2e-8b7c-4e21-a9f0-0c5d6e7f8a9b")
SERVER_IP = "203.0.113.1"
CONES = (NATType.FULL_CONE, NATType.ADDRESS_RESTRICTED, NATType.PORT_RESTRICTED)

# Without port prediction a symmetric NAT on either side keeps the pair relayed:
# the other side only accepts answers from addresses the server told it about.
EXPECTED_DIRECT = {
    (a, b): (a in CONES and b in CONES)
    for a, b in itertools.combinations_with_replacement(list(NATType), 2)
}


class PunchWorld:
    def __init__(self, testCase, natTypes, sameNat=False, seed=0,
                 policy=HolePunchPolicy.JUST_IN_TIME):
        self.net = MemoryNetwork(seed=seed)
        self.net.setDefaultConditions(LinkConditions(latency=0.02))
        self.serverHost = self.net.addHost(SERVER_IP)
        self.serverEvents = RecordingServerEvents(self.net.clock)
        self.server = NetServer(self.serverEvents, VERSION, tcpPort=5000, udpPort=5000,
                                reactor=self.serverHost, holePunchPolicy=policy)
        self.server.startService()
        if sameNat:
            nat = self.net.addNAT("198.51.100.1", natTypes[0])
            self.nats = [nat, nat]
            self.hosts = [nat.addHost("10.0.0.2"), nat.addHost("10.0.0.3")]
        else:
            self.nats = [self.net.addNAT(f"198.51.100.{i + 1}", t)
                         for i, t in enumerate(natTypes)]
            self.hosts = [nat.addHost(f"10.0.{i}.2") for i, nat in enumerate(self.nats)]
        self.clients = [NetClient(RecordingClientEvents(self.net.clock), reactor=h)
                        for h in self.hosts]
        joins = [c.connect(SERVER_IP, 5000, VERSION) for c in self.clients]
        assert self.net.runUntil(lambda: all(d.called for d in joins), 10)
        assert self.net.runUntil(lambda: all(
            c.getServerUdpState() is ServerUdpState.CONFIRMED for c in self.clients), 10)
        testCase.addCleanup(self.stop)

    @property
    def ids(self):
        return [c.getLocalHostID() for c in self.clients]

    def formGroup(self, **kw):
        self.group = self.server.createP2PGroup(self.ids, **kw)
        self.formedAt = self.net.clock.seconds()
        _a, _b = self.clients
        assert self.net.runUntil(lambda: all(
            len(c.events.rec.named("onP2PMemberJoin")) >= 2 for c in self.clients), 5)
        return self.group

    def directPair(self):
        """Form the group and wait until both sides use the direct path;
        return C{(a, b, ida, idb)}."""
        self.formGroup()
        a, b = self.clients
        ida, idb = self.ids
        d = a.whenDirect(idb)
        assert self.net.runUntil(lambda: d.called and self.direct(1), 2)
        return a, b, ida, idb

    def direct(self, i=0) -> bool:
        a, b = self.clients[i], self.clients[1 - i]
        return not a.getPeerInfo(b.getLocalHostID()).relayed

    def stop(self):
        stopMemoryWorld(self.net, self.server, self.clients)


class NatMatrixTests(SynchronousTestCase):
    def test_everyPairOfNatTypes(self):
        for (typeA, typeB), expectDirect in sorted(EXPECTED_DIRECT.items(),
                                                   key=lambda kv: str(kv[0])):
            with self.subTest(a=typeA.name, b=typeB.name):
                self.checkPair(typeA, typeB, expectDirect)

    def checkPair(self, typeA, typeB, expectDirect):
        # A seed of the pair's own (hash() of a str-valued enum changes per process).
        seed = zlib.crc32(f"{typeA.value}/{typeB.value}".encode()) % 1000
        world = PunchWorld(self, (typeA, typeB), seed=seed)
        world.formGroup()
        a, b = world.clients
        ida, idb = world.ids
        # Messages flow from the moment the group forms (and start punching).
        a.send(idb, b"hello b")
        b.send(ida, b"hello a")
        self.assertTrue(world.net.runUntil(
            lambda: a.events.messagesFrom(idb) and b.events.messagesFrom(ida), 1.0))
        if expectDirect:
            self.assertTrue(world.net.runUntil(lambda: world.direct(0) and world.direct(1),
                                               world.formedAt + 1.0 - world.net.clock.seconds()),
                            f"{typeA.name} <-> {typeB.name} not direct within 1 s")
            self.assertEqual(a.getPeerInfo(idb).directAddress[0], world.nats[1].ip)
        else:
            world.net.advance(15)     # the whole punch schedule gives up meanwhile
            self.assertFalse(world.direct(0) or world.direct(1),
                             f"{typeA.name} <-> {typeB.name} should stay relayed")
        # Either way, a reliable stream keeps flowing on whatever path the pair has.
        for i in range(50):
            a.send(idb, b"m%d" % i)
        self.assertTrue(world.net.runUntil(lambda: len(b.events.messagesFrom(ida)) >= 51, 10))
        self.assertEqual(b.events.messagesFrom(ida), [b"hello b"] + [b"m%d" % i for i in range(50)])
        stats = world.server.getP2PConnectionStats(world.group)
        self.assertEqual((stats.totalPairs, stats.directPairs), (1, int(expectDirect)))


class PunchBehaviourTests(SynchronousTestCase):
    def test_sameNatGoesDirectOverTheLan(self):
        world = PunchWorld(self, (NATType.PORT_RESTRICTED,), sameNat=True)
        world.formGroup()
        a, b = world.clients
        d = a.whenDirect(b.getLocalHostID())
        self.assertTrue(world.net.runUntil(lambda: d.called and world.direct(1), 2))
        self.assertEqual(self.successResultOf(d), ("10.0.0.3", b.getLocalUdpAddress()[1]))
        self.assertEqual(b.getPeerInfo(a.getLocalHostID()).directAddress[0], "10.0.0.2")

    def test_relayStateEventsAndWhenDirectForManyCallers(self):
        world = PunchWorld(self, (NATType.FULL_CONE, NATType.PORT_RESTRICTED))
        world.formGroup()
        a, b = world.clients
        ida, idb = world.ids
        first, second = a.whenDirect(idb), a.whenDirect(idb)
        self.assertTrue(world.net.runUntil(lambda: first.called and second.called, 2))
        self.assertEqual(self.successResultOf(first), self.successResultOf(second))
        self.assertEqual(self.successResultOf(a.whenDirect(idb)),
                         a.getPeerInfo(idb).directAddress)      # already direct: at once
        self.assertTrue(world.net.runUntil(
            lambda: b.events.rec.named("onChangeP2PRelayState"), 1))
        for client, peer in ((a, idb), (b, ida)):
            self.assertEqual(client.events.rec.named("onChangeP2PRelayState")[0],
                             (peer, RelayReason.HOLE_PUNCHED))

    def test_whenDirectFailsClearlyWhenPunchingGivesUp(self):
        world = PunchWorld(self, (NATType.SYMMETRIC, NATType.SYMMETRIC))
        world.formGroup()
        a, b = world.clients
        d = a.whenDirect(b.getLocalHostID())
        self.assertTrue(world.net.runUntil(lambda: d.called, 30))
        self.failureResultOf(d, HolePunchFailed)

    def test_whenDirectCanBeCancelled(self):
        world = PunchWorld(self, (NATType.SYMMETRIC, NATType.SYMMETRIC))
        world.formGroup()
        a, b = world.clients
        d = a.whenDirect(b.getLocalHostID())
        d.cancel()
        self.failureResultOf(d).trap(Exception)
        world.net.advance(15)      # the give-up later does not touch the cancelled Deferred

    def test_directNotAllowedStaysRelayed(self):
        world = PunchWorld(self, (NATType.FULL_CONE, NATType.FULL_CONE))
        world.formGroup(allowDirectP2P=False)
        a, b = world.clients
        self.failureResultOf(a.whenDirect(b.getLocalHostID()), HolePunchFailed)
        a.send(b.getLocalHostID(), b"relayed")
        world.net.advance(5)
        self.assertFalse(world.direct(0))
        self.assertEqual(b.events.messagesFrom(a.getLocalHostID()), [b"relayed"])

    def test_alwaysPolicyPunchesWithoutAnyMessage(self):
        world = PunchWorld(self, (NATType.FULL_CONE, NATType.ADDRESS_RESTRICTED),
                           policy=HolePunchPolicy.ALWAYS)
        world.formGroup()
        self.assertTrue(world.net.runUntil(lambda: world.direct(0) and world.direct(1), 1))

    def test_justInTimeWaitsForTheFirstMessage(self):
        world = PunchWorld(self, (NATType.FULL_CONE, NATType.FULL_CONE))
        world.formGroup()
        world.net.advance(3)
        self.assertFalse(world.direct(0) or world.direct(1))
        world.clients[0].send(world.ids[1], b"go")
        self.assertTrue(world.net.runUntil(lambda: world.direct(0) and world.direct(1), 1))

    def test_forceRelayAndBack(self):
        world = PunchWorld(self, (NATType.FULL_CONE, NATType.FULL_CONE))
        world.formGroup()
        a, b = world.clients
        idb = b.getLocalHostID()
        d = a.whenDirect(idb)
        self.assertTrue(world.net.runUntil(lambda: d.called, 2))
        a.forceRelay(idb)
        self.assertTrue(a.getPeerInfo(idb).relayed)
        self.assertEqual(a.events.rec.named("onChangeP2PRelayState")[-1],
                         (idb, RelayReason.FORCED_RELAY))
        a.send(idb, b"still arrives")
        self.assertTrue(world.net.runUntil(
            lambda: b.events.messagesFrom(a.getLocalHostID()) == [b"still arrives"], 5))
        a.forceRelay(idb, False)
        self.assertTrue(world.net.runUntil(lambda: world.direct(0), 12))


class DirectPathDiesTests(SynchronousTestCase):
    def test_fallBackToRelayMidStreamThenDirectAgain(self):
        world = PunchWorld(self, (NATType.PORT_RESTRICTED, NATType.FULL_CONE), seed=3)
        a, b, ida, idb = world.directPair()
        sent = [b"r%05d" % i for i in range(3000)]
        natA, natB = world.nats
        for i, payload in enumerate(sent):
            a.send(idb, payload)
            if i == 1000:
                world.net.partition(natA, natB)        # the direct path dies mid-stream
            world.net.advance(0.002)
        self.assertTrue(world.net.runUntil(lambda: world.clients[0].getPeerInfo(idb).relayed, 10))
        self.assertIn((idb, RelayReason.DIRECT_PATH_DIED),
                      a.events.rec.named("onChangeP2PRelayState"))
        self.assertTrue(world.net.runUntil(
            lambda: len(b.events.messagesFrom(ida)) >= len(sent), 60))
        self.assertTrue(b.events.messagesFrom(ida) == sent,
                        "reliable stream lost, duplicated or reordered across the fallback")
        contexts = [ctx for sender, _, ctx in b.events.rec.named("onReceiveUserMessage")
                    if sender == ida]
        self.assertFalse(contexts[0].relayed)       # before the cut: direct
        self.assertTrue(contexts[-1].relayed)       # after the fallback: the relay
        world.net.heal(natA, natB)
        self.assertTrue(world.net.runUntil(lambda: world.direct(0) and world.direct(1), 70))


    def test_oneWayCutFallsBackOnBothSidesWithinOneTimeout(self):
        world = PunchWorld(self, (NATType.FULL_CONE, NATType.FULL_CONE), seed=4)
        a, b, ida, idb = world.directPair()
        natA, natB = world.nats
        world.net.setConditions(natA, natB, LinkConditions(blocked=True, latency=0.02))
        cutAt = world.net.clock.seconds()
        sent = [b"one-way %d" % i for i in range(600)]
        for payload in sent:
            a.send(idb, payload)
            b.send(ida, payload)
            world.net.advance(0.01)
        timeout = a._engine.peerLinks.pathConfig.directTimeout
        # B stops hearing A and falls back; A follows as soon as B's frames come relayed.
        self.assertTrue(world.net.runUntil(lambda: not world.direct(0) and not world.direct(1),
                                           cutAt + timeout + 1.5 - world.net.clock.seconds()))
        self.assertTrue(world.net.runUntil(lambda: len(b.events.messagesFrom(ida)) >= 600, 30))
        self.assertEqual(b.events.messagesFrom(ida), sent)
        self.assertTrue(world.net.runUntil(lambda: len(a.events.messagesFrom(idb)) >= 600, 30))
        self.assertEqual(a.events.messagesFrom(idb), sent)


class ForgedProbeTests(SynchronousTestCase):
    def test_forgedProbesAndAnswersNeverChangeThePath(self):
        world = PunchWorld(self, (NATType.FULL_CONE, NATType.FULL_CONE))
        world.formGroup()
        a, _b = world.clients
        ida, idb = world.ids
        attackerHost = world.net.addHost("192.0.2.66")
        attacker = attackerHost.listenUDP(7777, _Sink())
        victim = world.server.getClientInfo(ida).udpAddress    # a's public mapping
        secret = a._engine.peerTable.peers[idb].pairSecret
        wrongKey = pairProbeKey(b"\x00" * 32)
        rightKey = pairProbeKey(secret)
        forged = [
            encodeControl(PUNCH_ANSWER, idb, ida, b"\x01" * 8, wrongKey),   # wrong secret
            encodeControl(PUNCH_PROBE, idb, ida, b"\x02" * 8, wrongKey),
            encodeControl(PUNCH_ANSWER, idb, ida, b"\x03" * 8, rightKey),   # non-candidate source
            encodeControl(PUNCH_PROBE, idb, ida, b"\x04" * 8, rightKey),
        ]

        def attack():
            for datagram in forged:
                attacker.write(datagram, victim)

        attack()
        world.net.advance(0.5)
        self.assertIsNone(a.getPeerInfo(idb).directAddress)
        self.assertEqual(a.events.rec.named("onChangeP2PRelayState"), [])
        # Now let the real pair punch, then attack the established path.
        d = a.whenDirect(idb)
        self.assertTrue(world.net.runUntil(lambda: d.called, 2))
        realAddress = a.getPeerInfo(idb).directAddress
        for _ in range(20):
            attack()
            world.net.advance(0.1)
        self.assertEqual(a.getPeerInfo(idb).directAddress, realAddress)
        self.assertNotEqual(realAddress[0], "192.0.2.66")
        self.assertGreater(a._engine.peerLinks.rejectedDatagrams +
                           a._engine.peerTable.peers[idb].pathDriver.core.rejected, 0)
        attacker.stopListening()


class _Sink:
    def makeConnection(self, transport):
        self.transport = transport

    def doStart(self):
        pass

    def doStop(self):
        pass

    def datagramReceived(self, data, addr):
        pass
