"""Connection recovery on the memory network: a client whose connection
drops resumes its session (same HostID, groups, peers; reliable messages
once and in order both ways), or leaves for good when its window runs out.
Deterministic: one clock, no real sockets."""

from __future__ import annotations

import uuid
from unittest import mock

from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import (
    ErrorType,
    NetClient,
    NetServer,
    ResumeRefusal,
    SendQueueFull,
    ServerUdpState,
)
from proud_twisted._crypto.resume import resumeProof
from proud_twisted.client.engine import MAX_UNACKNOWLEDGED_TO_SERVER
from proud_twisted.crypto import ClientHandshake
from proud_twisted.server.connection import ServerConnection
from proud_twisted.server.engine import ServerEngine
from proud_twisted.testing import LinkConditions, MemoryNetwork
from proud_twisted.wire.framing import FrameDecoder, encodeFrame
from proud_twisted.wire.messages import WIRE_VERSION, decodeMessage, encodeMessage
from tests.support import (
    RecordingClientEvents,
    RecordingServerEvents,
    spyOn,
    stopMemoryWorld,
)

VERSION = uuid.UUID("7265636f-7665-7279-0000-746573740001")
SERVER_IP = "203.0.113.1"
CLIENT_TIMEOUT = 2.0
SEND_INTERVAL = 0.05
RECOVERED_WITHIN = 6.0      # after the link comes back: the backoff pause is at most 2 s


class RecoveryWorld:
    """A server and two clients, alice and bob, in one group, on public hosts."""

    def __init__(self, testCase, window: float = 30.0, encryption: bool = True,
                 **serverOptions) -> None:
        self.net = net = MemoryNetwork(seed=7)
        self.serverHost = net.addHost(SERVER_IP)
        self.serverEvents = RecordingServerEvents(net.clock)
        self.server = NetServer(self.serverEvents, VERSION, tcpPort=33333, udpPort=33333,
                                reactor=self.serverHost, clientTimeout=CLIENT_TIMEOUT,
                                recoveryWindow=window, encryption=encryption,
                                **serverOptions)
        self.server.startService()
        self.aliceHost = net.addHost("198.51.100.10")
        self.bobHost = net.addHost("198.51.100.20")
        for host in (self.aliceHost, self.bobHost):
            net.setConditions(host, self.serverHost, LinkConditions(latency=0.01))
            net.setConditions(self.serverHost, host, LinkConditions(latency=0.01))
        self.alice = NetClient(RecordingClientEvents(net.clock), reactor=self.aliceHost,
                               encryption=encryption)
        self.bob = NetClient(RecordingClientEvents(net.clock), reactor=self.bobHost,
                             encryption=encryption)
        joined = [c.connect(SERVER_IP, 33333, VERSION) for c in (self.alice, self.bob)]
        assert net.runUntil(lambda: all(d.called for d in joined), 10)
        self.aliceID, self.bobID = self.alice.getLocalHostID(), self.bob.getLocalHostID()
        self.group = self.server.createP2PGroup([self.aliceID, self.bobID])
        assert net.runUntil(
            lambda: self.serverEvents.rec.count("onP2PGroupJoinMemberAckComplete") == 2, 10)
        self.streams = []
        testCase.addCleanup(self.stop)

    def stop(self) -> None:
        for stream in self.streams:
            stream.stop()
        stopMemoryWorld(self.net, self.server, [self.alice, self.bob])

    def stream(self, name: str, send) -> Stream:
        stream = Stream(self.net.clock, name, send)
        self.streams.append(stream)
        return stream

    def startStreams(self) -> dict:
        """Reliable messages every 50 ms: alice <-> server and alice <-> bob."""
        a, b, server = self.alice, self.bob, self.server
        return {
            "alice->server": self.stream("as", lambda p: a.send(1, p)),
            "server->alice": self.stream("sa", lambda p: server.send(self.aliceID, p)),
            "alice->bob": self.stream("ab", lambda p: a.send(self.bobID, p)),
            "bob->alice": self.stream("ba", lambda p: b.send(self.aliceID, p)),
        }

    def received(self) -> dict:
        """What each stream's receiver got from its sender, in order."""
        toServer = [p for sender, p, _ in self.serverEvents.rec.named("onReceiveUserMessage")
                    if sender == self.aliceID]
        return {
            "alice->server": toServer,
            "server->alice": list(self.alice.events.messagesFrom(1)),
            "alice->bob": list(self.bob.events.messagesFrom(self.aliceID)),
            "bob->alice": list(self.alice.events.messagesFrom(self.bobID)),
        }

    def names(self, recorder, *names) -> list:
        return [event[0] for event in recorder.events if event[0] in names]


class Stream:
    """Numbered reliable messages sent every L{SEND_INTERVAL} until stopped."""

    def __init__(self, clock, name: str, send) -> None:
        self.clock, self.name, self.send = clock, name, send
        self.sent = []
        self._call = clock.callLater(0, self._tick)

    def _tick(self) -> None:
        payload = b"%s%d" % (self.name.encode(), len(self.sent))
        self.send(payload)
        self.sent.append(payload)
        self._call = self.clock.callLater(SEND_INTERVAL, self._tick)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class ResumeTests(SynchronousTestCase):

    def _outageMidStream(self, world: RecoveryWorld, cut) -> dict:
        """Streams run 2 s, C{cut()} breaks alice's link, they run on until
        she is back and 2 s more; every stream then drains."""
        streams = world.startStreams()
        world.net.advance(2)
        cut()
        rec = world.alice.events.rec
        assert world.net.runUntil(lambda: rec.count("onServerOnline") == 1,
                                  CLIENT_TIMEOUT + 5 + RECOVERED_WITHIN)
        world.net.advance(2)
        for stream in streams.values():
            stream.stop()
        sent = {name: stream.sent for name, stream in streams.items()}
        assert world.net.runUntil(lambda: world.received() == sent, 20), {
            name: (len(sent[name]), len(got)) for name, got in world.received().items()}
        return sent

    def _assertResumed(self, world: RecoveryWorld, reason: ErrorType) -> None:
        alice, bob, server = world.alice, world.bob, world.server
        self.assertEqual(alice.getLocalHostID(), world.aliceID)
        self.assertEqual(alice.getLocalJoinedP2PGroups(), {world.group})
        self.assertEqual(server.getJoinedP2PGroups(world.aliceID), {world.group})
        self.assertEqual(server.getClientHostIDs(), sorted([world.aliceID, world.bobID]))
        self.assertEqual(alice.getPeerHostIDs(), [world.bobID])
        # The events, in order, on the client, the server and the peer.
        self.assertEqual(world.names(alice.events.rec, "onServerOffline", "onServerOnline",
                                     "onLeaveServer"),
                         ["onServerOffline", "onServerOnline"])
        self.assertEqual(alice.events.rec.named("onServerOffline"), [(reason,)])
        serverEvents = [(e[0], e[1].hostID) for e in world.serverEvents.rec.events
                        if e[0] in ("onClientOffline", "onClientOnline", "onClientLeave")]
        self.assertEqual(serverEvents, [("onClientOffline", world.aliceID),
                                        ("onClientOnline", world.aliceID)])
        self.assertEqual(world.names(bob.events.rec, "onP2PMemberOffline", "onP2PMemberOnline",
                                     "onP2PMemberLeave"),
                         ["onP2PMemberOffline", "onP2PMemberOnline"])
        self.assertEqual(bob.events.rec.named("onP2PMemberOffline"), [(world.aliceID,)])
        self.assertEqual(server.stats.clientsResumed, 1)
        # The UDP path to the server is confirmed again.
        assert world.net.runUntil(
            lambda: alice.getServerUdpState() is ServerUdpState.CONFIRMED, 10)

    def test_aResetConnectionResumesWithNothingLost(self):
        world = RecoveryWorld(self)
        sent = self._outageMidStream(world, lambda: world.net.disconnectHost(world.aliceHost))
        self._assertResumed(world, ErrorType.DISCONNECT_FROM_REMOTE)
        self.assertGreater(min(len(s) for s in sent.values()), 60)

    def test_aFiveSecondOutageResumesWithNothingLost(self):
        world = RecoveryWorld(self)
        net = world.net

        def cut():
            net.partition(world.aliceHost, world.serverHost)
            net.partition(world.aliceHost, world.bobHost)
            net.clock.callLater(5, net.heal, world.aliceHost, world.serverHost)
            net.clock.callLater(5, net.heal, world.aliceHost, world.bobHost)
        self._outageMidStream(world, cut)
        self._assertResumed(world, ErrorType.TIMEOUT)
        # Messages sent while she was away were held and arrived after.
        self.assertEqual(world.alice.events.rec.count("onLeaveServer"), 0)

    def test_aClientWhoseAddressChangedTakesItsSessionBack(self):
        """The client gave its connection up (its address changed) while the
        server never heard the old one end: the resume moves the session
        over, offline then online, and nothing is lost."""
        world = RecoveryWorld(self)
        old = world.server._engine._clients[world.aliceID]
        lost = ServerConnection.connectionLost
        unheard = mock.patch.object(
            ServerConnection, "connectionLost",
            lambda connection, reason: None if connection is old else lost(connection,
                                                                            reason))
        unheard.start()
        self.addCleanup(unheard.stop)
        keptOffline = []
        spyOn(self, ServerEngine, "_goOffline", lambda engine, c: keptOffline.append(c))
        self._outageMidStream(world, lambda: world.net.disconnectHost(world.aliceHost))
        self._assertResumed(world, ErrorType.DISCONNECT_FROM_REMOTE)
        self.assertIsNot(world.server._engine._clients[world.aliceID], old)
        self.assertTrue(old.closing)
        self.assertEqual(keptOffline, [])      # it was still joined when she came back
        self.assertEqual(world.server.stats.clientsOffline, 1)

    def test_repeatedDropsOnALossyNetworkLoseNothing(self):
        """Five resets, one every few seconds, with 5 % UDP loss and jitter:
        every stream still arrives whole, once, in order."""
        world = RecoveryWorld(self)
        net = world.net
        lossy = LinkConditions(latency=0.02, jitter=0.01, loss=0.05)
        for a, b in ((world.aliceHost, world.serverHost), (world.serverHost, world.aliceHost),
                     (world.bobHost, world.serverHost), (world.serverHost, world.bobHost)):
            net.setConditions(a, b, lossy)
        streams = world.startStreams()
        rec = world.alice.events.rec
        for drop in range(1, 6):
            net.advance(2)
            net.disconnectHost(world.aliceHost)
            assert net.runUntil(lambda n=drop: rec.count("onServerOnline") == n,
                                RECOVERED_WITHIN)
        net.advance(1)
        for stream in streams.values():
            stream.stop()
        sent = {name: stream.sent for name, stream in streams.items()}
        assert net.runUntil(lambda: world.received() == sent, 30), {
            name: (len(sent[name]), len(got)) for name, got in world.received().items()}
        self.assertGreater(min(len(got) for got in sent.values()), 150)
        self.assertEqual(world.server.stats.clientsResumed, 5)
        self.assertEqual(world.alice.getLocalHostID(), world.aliceID)
        self.assertEqual(world.serverEvents.rec.count("onClientLeave"), 0)

    def test_withoutEncryptionTheServerGivesTheResumeKey(self):
        world = RecoveryWorld(self, encryption=False)
        self._outageMidStream(world, lambda: world.net.disconnectHost(world.aliceHost))
        self._assertResumed(world, ErrorType.DISCONNECT_FROM_REMOTE)

    def test_anOutageLongerThanTheWindowLeavesForGood(self):
        window = 3.0
        world = RecoveryWorld(self, window=window)
        net = world.net
        net.partition(world.aliceHost, world.serverHost)
        assert net.runUntil(lambda: world.alice.events.rec.count("onLeaveServer") == 1,
                            CLIENT_TIMEOUT + window + 5)
        assert net.runUntil(lambda: world.serverEvents.rec.count("onClientLeave") == 1, 10)
        alice, bob = world.alice, world.bob
        self.assertEqual(world.names(alice.events.rec, "onServerOffline", "onServerOnline",
                                     "onLeaveServer"),
                         ["onServerOffline", "onLeaveServer"])
        self.assertEqual(alice.events.rec.named("onLeaveServer"), [(ErrorType.TIMEOUT,)])
        self.assertEqual(alice.getLocalHostID(), 0)
        serverEvents = [(e[0], e[1].hostID) for e in world.serverEvents.rec.events
                        if e[0] in ("onClientOffline", "onClientOnline", "onClientLeave")]
        self.assertEqual(serverEvents, [("onClientOffline", world.aliceID),
                                        ("onClientLeave", world.aliceID)])
        self.assertEqual(world.serverEvents.rec.named("onClientLeave")[0][1], ErrorType.TIMEOUT)
        self.assertEqual(world.names(bob.events.rec, "onP2PMemberOffline", "onP2PMemberOnline",
                                     "onP2PMemberLeave"),
                         ["onP2PMemberOffline", "onP2PMemberLeave"])
        self.assertEqual(world.server.getClientHostIDs(), [world.bobID])
        self.assertEqual(world.server.stats.recoveryExpired, 1)
        self.assertEqual(bob.getPeerHostIDs(), [])
        net.heal(world.aliceHost, world.serverHost)

    def test_windowZeroTurnsRecoveryOff(self):
        world = RecoveryWorld(self, window=0)
        world.net.disconnectHost(world.aliceHost)
        assert world.net.runUntil(lambda: world.alice.events.rec.count("onLeaveServer"), 5)
        assert world.net.runUntil(lambda: world.serverEvents.rec.count("onClientLeave"), 5)
        self.assertEqual(world.alice.events.rec.count("onServerOffline"), 0)
        self.assertEqual(world.serverEvents.rec.count("onClientOffline"), 0)

    def test_aKickedClientDoesNotComeBack(self):
        world = RecoveryWorld(self)
        world.server.closeConnection(world.aliceID)
        assert world.net.runUntil(lambda: world.alice.events.rec.count("onLeaveServer"), 5)
        self.assertEqual(world.alice.events.rec.count("onServerOffline"), 0)
        self.assertEqual(world.server.stats.clientsOffline, 0)

    def test_disconnectWhileOfflineLeavesAtOnce(self):
        world = RecoveryWorld(self)
        assert world.net.runUntil(lambda: world.alice.getServerTime() is not None, 5)
        world.net.partition(world.aliceHost, world.serverHost)
        rec = world.alice.events.rec
        assert world.net.runUntil(lambda: rec.count("onServerOffline") == 1, 10)
        # The server's clock is still known while offline.
        self.assertAlmostEqual(world.alice.getServerTime(), world.net.clock.seconds(),
                               delta=world.alice.getServerTimeError())
        done = world.alice.disconnect()
        self.assertTrue(done.called)
        self.assertEqual(rec.named("onLeaveServer"), [(ErrorType.DISCONNECT_FROM_LOCAL,)])
        world.net.heal(world.aliceHost, world.serverHost)

    def test_anOfflineClientsOutputPastItsBoundEndsTheSession(self):
        """Reliable messages to an offline client wait, up to
        C{maxClientOutput}; past it the session ends instead of growing."""
        budget = 80_000
        world = RecoveryWorld(self, maxClientOutput=budget)
        world.net.partition(world.aliceHost, world.serverHost)
        events = world.serverEvents.rec
        assert world.net.runUntil(lambda: events.count("onClientOffline") == 1, 10)
        session = world.server._engine._clients[world.aliceID]
        held = []
        for _ in range(100):
            if events.count("onClientLeave"):
                break
            world.server.send(world.aliceID, bytes(1000))
            held.append(session.stream.unacknowledgedBytes if session.stream else 0)
            world.net.advance(0.01)
        self.assertLessEqual(max(held), budget)
        self.assertEqual(events.named("onClientLeave")[0][1], ErrorType.SLOW_CONSUMER)
        self.assertEqual(world.server.stats.resendOverflows, 1)
        self.assertEqual(world.server.getClientHostIDs(), [world.bobID])
        world.net.heal(world.aliceHost, world.serverHost)
        # Alice's resume is refused: her session is gone; she leaves.
        assert world.net.runUntil(lambda: world.alice.events.rec.count("onLeaveServer"), 10)
        self.assertEqual(world.server.stats.resumesRefused, 1)

    def test_theClientHoldsAtMostItsBoundForTheServerWhileOffline(self):
        """Reliable sends to the server while offline wait, up to
        MAX_UNACKNOWLEDGED_TO_SERVER; past it send() raises SendQueueFull
        (nothing is sent), and what waited arrives in order after the resume."""
        world = RecoveryWorld(self)
        net, alice = world.net, world.alice
        net.partition(world.aliceHost, world.serverHost)
        assert net.runUntil(lambda: alice.events.rec.count("onServerOffline") == 1, 10)
        sent = []
        with self.assertRaises(SendQueueFull) as caught:
            for i in range(100):
                payload = b"%03d" % i + bytes(60_000)
                alice.send(1, payload)
                sent.append(payload)
        self.assertEqual(list(caught.exception.hostIDs), [1])
        stream = alice._engine.stream
        self.assertLessEqual(stream.unacknowledgedBytes, MAX_UNACKNOWLEDGED_TO_SERVER)
        self.assertGreater(len(sent), 10)
        net.heal(world.aliceHost, world.serverHost)
        assert net.runUntil(lambda: alice.events.rec.count("onServerOnline") == 1,
                            RECOVERED_WITHIN)

        def toServer():
            return [p for sender, p, _ in world.serverEvents.rec.named("onReceiveUserMessage")
                    if sender == world.aliceID]
        assert net.runUntil(lambda: len(toServer()) >= len(sent), 10)
        self.assertEqual(toServer(), sent)

    def test_offlineClientsBeyondTheLimitLeaveAtOnce(self):
        world = RecoveryWorld(self, maxOfflineClients=1)
        world.net.disconnectHost(world.aliceHost)
        world.net.disconnectHost(world.bobHost)
        assert world.net.runUntil(lambda: world.serverEvents.rec.count("onClientLeave"), 5)
        self.assertEqual(world.server.stats.clientsOffline, 1)
        self.assertEqual(world.server.stats.recoveryRefused, 1)
        # The one kept offline still resumes.
        assert world.net.runUntil(
            lambda: world.serverEvents.rec.count("onClientOnline") == 1, RECOVERED_WITHIN)


class ResumeProbe(Protocol):
    """A hand-made client: the handshake, then RESUME_REQUEST for C{hostID},
    then answers the challenge with C{prove(nonce)}; it records what came."""

    def __init__(self, hostID: int, prove) -> None:
        self.hostID, self.prove = hostID, prove
        self.decoder = FrameDecoder(1 << 20)
        self.handshake = ClientHandshake()
        self.channel = None
        self.got = []
        self.closed = False

    def connectionMade(self) -> None:
        self.transport.write(encodeFrame(self.handshake.start()))

    def send(self, kind: str, **fields) -> None:
        self.transport.write(encodeFrame(self.channel.seal(encodeMessage(kind, **fields))))

    def dataReceived(self, data: bytes) -> None:
        for body in self.decoder.feed(data):
            if self.channel is None:
                if body[0] == 3:        # JOIN_REFUSED, in the clear: the server is full
                    self.got.append(decodeMessage(body))
                    continue
                self.transport.write(encodeFrame(self.handshake.receive(body)))
                self.channel = self.handshake.keys.clientChannel("tcp")
                self.send("RESUME_REQUEST", wireVersion=WIRE_VERSION, hostID=self.hostID)
                continue
            name, fields = decodeMessage(self.channel.open(body))
            self.got.append((name, fields))
            if name == "RESUME_CHALLENGE" and self.prove is not None:
                self.send("RESUME", hostID=self.hostID, received=0,
                          proof=self.prove(fields.nonce))

    def connectionLost(self, reason) -> None:
        self.closed = True


class HostileResumeTests(SynchronousTestCase):

    def _probe(self, world, hostID, prove, until=None) -> ResumeProbe:
        self.probes = getattr(self, "probes", 0) + 1
        host = world.net.addHost(f"192.0.2.{self.probes}")
        probe = ResumeProbe(hostID, prove)
        factory = ClientFactory.forProtocol(lambda: probe)
        host.connectTCP(SERVER_IP, 33333, factory)
        assert world.net.runUntil(until or (lambda: probe.closed), 10)
        return probe

    def _refused(self, probe) -> list:
        return [fields.reason for name, fields in probe.got if name == "RESUME_REFUSED"]

    def _assertUnharmed(self, world: RecoveryWorld) -> None:
        self.assertEqual(world.server.getClientHostIDs(), sorted([world.aliceID, world.bobID]))
        self.assertEqual(world.serverEvents.rec.count("onClientOffline"), 0)
        self.assertEqual(world.alice.events.rec.count("onServerOffline"), 0)
        world.server.send(world.aliceID, b"still here")
        assert world.net.runUntil(lambda: world.alice.events.messagesFrom(1) == [b"still here"],
                                  5)

    def _key(self, client) -> bytes:
        return client._engine._recovery[1]

    def test_forgedResumesAreRefusedCountedAndHarmNoOne(self):
        world = RecoveryWorld(self)
        aliceKey, bobKey = self._key(world.alice), self._key(world.bob)
        oldProof = resumeProof(aliceKey, world.aliceID, b"\0" * 16)
        attempts = [
            # A wrong key.
            lambda nonce: resumeProof(b"k" * 32, world.aliceID, nonce),
            # A replayed answer (to another nonce).
            lambda nonce: oldProof,
            # Bob's own key for alice's HostID.
            lambda nonce: resumeProof(bobKey, world.aliceID, nonce),
        ]
        for prove in attempts:
            probe = self._probe(world, world.aliceID, prove)
            self.assertEqual(self._refused(probe), [ResumeRefusal.BAD_PROOF])
        # A HostID nobody has.
        probe = self._probe(world, 4242, lambda nonce: resumeProof(aliceKey, 4242, nonce))
        self.assertEqual(self._refused(probe), [ResumeRefusal.UNKNOWN_SESSION])
        self.assertEqual(world.server.stats.resumesRefused, 4)
        self._assertUnharmed(world)

    def test_theRealKeyResumesOnlyWithinTheWindow(self):
        world = RecoveryWorld(self, window=2.0)
        aliceKey = self._key(world.alice)
        world.net.partition(world.aliceHost, world.serverHost)
        assert world.net.runUntil(
            lambda: world.serverEvents.rec.count("onClientLeave") == 1, CLIENT_TIMEOUT + 5)
        probe = self._probe(world, world.aliceID,
                            lambda nonce: resumeProof(aliceKey, world.aliceID, nonce))
        self.assertEqual(self._refused(probe), [ResumeRefusal.UNKNOWN_SESSION])
        world.net.heal(world.aliceHost, world.serverHost)

    def test_aFloodOfResumeRequestsIsBoundedByTheUnauthenticatedLimit(self):
        """Resumes under way are connections not yet joined: at most
        C{maxUnauthenticated} at once, each gone after C{handshakeTimeout}."""
        world = RecoveryWorld(self, maxUnauthenticated=5, handshakeTimeout=1.0)
        silent = []
        for i in range(8):
            host = world.net.addHost(f"192.0.2.{100 + i}")
            probe = ResumeProbe(world.aliceID, None)     # never answers the challenge
            host.connectTCP(SERVER_IP, 33333, ClientFactory.forProtocol(lambda p=probe: p))
            silent.append(probe)
        world.net.advance(1)
        challenged = [p for p in silent if any(n == "RESUME_CHALLENGE" for n, _ in p.got)]
        self.assertEqual(len(challenged), 5)
        self.assertEqual(world.server.stats.unauthenticatedRefused, 3)
        assert world.net.runUntil(lambda: all(p.closed for p in silent), 5)
        self.assertEqual(world.server.stats.handshakeTimeouts, 5)
        self.assertEqual(world.server.getConnectionCount(), 2)
        self._assertUnharmed(world)

    def test_aStolenKeyTakesOverButNeverDuplicates(self):
        """Whoever holds the key may resume (that is what the key is for):
        the old connection goes offline first, the session moves whole."""
        world = RecoveryWorld(self)
        aliceKey = self._key(world.alice)
        probe = self._probe(world, world.aliceID,
                            lambda nonce: resumeProof(aliceKey, world.aliceID, nonce),
                            until=lambda: world.serverEvents.rec.count("onClientOnline"))
        self.assertIn("RESUME_ACCEPTED", [name for name, _ in probe.got])
        names = [e[0] for e in world.serverEvents.rec.events
                 if e[0] in ("onClientOffline", "onClientOnline")]
        self.assertEqual(names[:2], ["onClientOffline", "onClientOnline"])
