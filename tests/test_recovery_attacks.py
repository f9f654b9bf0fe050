"""Attacks on connection recovery (issue #17), on the memory network: what a
cheater holding its own session's key, or anyone on the internet, can make
the server do with resumes and stream acknowledgements. Deterministic."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import ErrorType, ResumeRefusal
from proud_twisted._crypto.resume import resumeKeyFromSession, resumeProof
from proud_twisted._glue.sessiondriver import DEFAULT_SESSION_CONFIG
from proud_twisted.errors import ProtocolError
from proud_twisted.rudp import ReliableSession
from proud_twisted.server.engine import MIN_RESUME_INTERVAL
from proud_twisted.wire import relay
from proud_twisted.wire.framing import FrameDecoder, encodeFrame
from proud_twisted.wire.messages import WIRE_VERSION, decodeMessage, encodeMessage
from tests.test_recovery import SERVER_IP, VERSION, RecoveryWorld, ResumeProbe


class CountingProbe(ResumeProbe):
    """A L{ResumeProbe} that claims C{received} counted frames in its RESUME."""

    received = 0

    def names(self) -> list:
        return [name for name, _ in self.got]

    def send(self, kind: str, **fields) -> None:
        if kind == "RESUME":
            fields["received"] = self.received
        super().send(kind, **fields)


def _probe(testCase, world, hostID, prove, until, received=0) -> ResumeProbe:
    """A hand-made client on a host of its own resuming C{hostID}."""
    testCase.probes = getattr(testCase, "probes", 0) + 1
    host = world.net.addHost(f"192.0.2.{testCase.probes}")
    probe = CountingProbe(hostID, prove)
    probe.received = received
    factory = ClientFactory.forProtocol(lambda: probe)
    host.connectTCP(SERVER_IP, 33333, factory)
    assert world.net.runUntil(lambda: until(probe), 10)
    return probe


def watchFailures(testCase) -> list:
    """The failures and errors logged while C{testCase} runs."""
    failures = []

    def watch(event) -> None:
        if "log_failure" in event or event.get("log_level") in (LogLevel.error,
                                                                 LogLevel.critical):
            failures.append(event)
    globalLogPublisher.addObserver(watch)
    testCase.addCleanup(globalLogPublisher.removeObserver, watch)
    return failures


def _aliceProof(world):
    key = world.alice._engine._recovery[1]
    return lambda nonce: resumeProof(key, world.aliceID, nonce)


class TakeoverTests(SynchronousTestCase):
    """A resume while the session's old connection still looks alive (the
    key's holder takes it over)."""

    def test_aTakeoverClosesTheOldConnectionsUdpSession(self):
        """The old connection's reliable-UDP session with the server is
        closed: it sends and schedules nothing more, and gives back its
        charge of the server-wide receive budget (else each takeover by a
        cheater would leak up to a session's receive buffer of it, and the
        budget is what every client's session shares)."""
        world = RecoveryWorld(self)
        engine = world.server._engine
        old = engine._clients[world.aliceID]
        driver = engine._session(old)
        # Out-of-order reliable fragments wait in its receive buffer.
        sender = ReliableSession(DEFAULT_SESSION_CONFIG, world.net.clock.seconds())
        sender.send(bytes(8000), world.net.clock.seconds())
        datagrams = sender.datagramsToSend(world.net.clock.seconds())
        self.assertGreater(len(datagrams), 2)
        for datagram in datagrams[1:]:
            driver.receiveDatagram(datagram)
        self.assertGreater(engine.receiveBudget.usedBytes, 0)
        _probe(self, world, world.aliceID, _aliceProof(world),
               lambda p: any(n == "RESUME_ACCEPTED" for n, _ in p.got))
        world.net.advance(1)        # the old connection is gone by now
        self.assertIsNot(engine._clients[world.aliceID], old)
        self.assertTrue(driver.session.closed)
        self.assertIsNone(old.udpSession)
        self.assertEqual(engine.receiveBudget.usedBytes, 0)

    def test_aTakeoverResendsNoMoreThanAnOfflineSessionMayHold(self):
        """A client that reads but never acknowledges the counted stream,
        then resumes its own session from a new connection again and again,
        would make the server seal and write all of its unacknowledged
        output (up to C{maxClientOutput} + 8 MiB while connected) on every
        resume. A takeover is the session going offline for a moment: past
        the offline bound (C{maxClientOutput}) the session ends instead."""
        budget = 100_000
        world = RecoveryWorld(self, maxClientOutput=budget)
        engine = world.server._engine
        alice = world.alice
        # Alice's client reads but stops acknowledging (a cheater's would).
        self.patch(type(alice._engine), "_sendStreamAck",
                   lambda engine: setattr(engine, "_ackTimer", None))
        chunk = bytes(10_000)
        for _ in range(3 * budget // len(chunk)):
            world.server.send(world.aliceID, chunk)
            world.net.advance(0.01)
        old = engine._clients[world.aliceID]
        self.assertGreater(old.stream.unacknowledgedBytes, budget)
        self.assertFalse(old.closing)           # connected: the slack allows it
        acknowledged = old.stream.acknowledged
        probe = _probe(self, world, world.aliceID, _aliceProof(world),
                       lambda p: p.closed, received=acknowledged)
        resent = sum(len(fields.payload) if hasattr(fields, "payload") else 0
                     for _, fields in probe.got)
        self.assertLessEqual(resent, budget)
        self.assertNotIn("RESUME_ACCEPTED", [name for name, _ in probe.got])
        self.assertEqual([f.reason for n, f in probe.got if n == "RESUME_REFUSED"],
                         [ResumeRefusal.UNKNOWN_SESSION])
        events = world.serverEvents.rec
        assert world.net.runUntil(lambda: events.count("onClientLeave") == 1, 5)
        self.assertEqual(events.named("onClientLeave")[0][1], ErrorType.SLOW_CONSUMER)
        self.assertEqual(world.server.stats.resendOverflows, 1)
        self.assertEqual(world.server.getClientHostIDs(), [world.bobID])
        self.assertEqual(engine._offline, 0)

    def test_repeatedResumesResendAtMostOnceASecond(self):
        """A cheater that never acknowledges and resumes its own session
        again and again has its unacknowledged output resent at most once
        per L{MIN_RESUME_INTERVAL}: a resume sooner is closed unanswered
        (an honest client takes that as a failed attempt and tries again
        after its next pause), so resumes cost the server at most
        C{maxClientOutput} of sealing a second per client."""
        world = RecoveryWorld(self)
        engine = world.server._engine
        self.patch(type(world.alice._engine), "_sendStreamAck",
                   lambda engine: setattr(engine, "_ackTimer", None))
        for _ in range(20):
            world.server.send(world.aliceID, bytes(1000))
        world.net.advance(0.1)
        acknowledged = engine._clients[world.aliceID].stream.acknowledged
        key = [world.alice._engine._recovery[1]]

        def resume() -> CountingProbe:
            """One resume with the session's current key (after a resume,
            the key of that resume's handshake)."""
            probe = _probe(self, world, world.aliceID,
                           lambda nonce: resumeProof(key[0], world.aliceID, nonce),
                           lambda p: p.closed or "RESUME_ACCEPTED" in p.names(),
                           received=acknowledged)
            if "RESUME_ACCEPTED" in probe.names():
                key[0] = resumeKeyFromSession(probe.handshake.keys)
            return probe

        first = resume()
        self.assertIn("RESUME_ACCEPTED", first.names())
        self.assertEqual(first.names().count("USER_MESSAGE"), 20)      # resent
        soon = [resume() for _ in range(5)]
        for probe in soon:
            # Closed unanswered: neither accepted nor refused, nothing resent.
            self.assertEqual(probe.names(), ["RESUME_CHALLENGE"])
        self.assertFalse(first.closed)          # the session stays where it was
        self.assertEqual(world.server.stats.clientsResumed, 1)
        self.assertGreaterEqual(world.server.stats.resumesRefused, 5)
        world.net.advance(MIN_RESUME_INTERVAL)
        later = resume()
        self.assertIn("RESUME_ACCEPTED", later.names())
        self.assertEqual(later.names().count("USER_MESSAGE"), 20)
        self.assertEqual(world.server.stats.clientsResumed, 2)

    def test_anHonestClientDroppedAgainAtOnceStillResumes(self):
        """The other side of L{MIN_RESUME_INTERVAL}: a client whose
        connection drops again right after it resumed has its early
        attempts closed unanswered, tries again, and resumes, nothing lost."""
        world = RecoveryWorld(self)
        rec = world.alice.events.rec
        world.net.disconnectHost(world.aliceHost)
        assert world.net.runUntil(lambda: rec.count("onServerOnline") == 1, 5)
        world.server.send(world.aliceID, b"between")
        world.net.disconnectHost(world.aliceHost)
        assert world.net.runUntil(lambda: rec.count("onServerOnline") == 2, 5)
        self.assertGreaterEqual(world.server.stats.resumesRefused, 1)   # too soon
        self.assertEqual(world.server.stats.clientsResumed, 2)
        self.assertEqual(rec.count("onLeaveServer"), 0)
        self.assertEqual(world.alice.getLocalHostID(), world.aliceID)
        world.server.send(world.aliceID, b"after")
        assert world.net.runUntil(
            lambda: world.alice.events.messagesFrom(1) == [b"between", b"after"], 5)


class ClientEventOrderTests(SynchronousTestCase):

    def test_nothingAfterLeaveWhenTheWindowIsOverAtOnce(self):
        """A window the client finds over as soon as it goes offline (a
        server's window under a millisecond is told as 0 ms): it still says
        C{onServerOffline} before C{onLeaveServer}, and nothing after."""
        world = RecoveryWorld(self, window=0.0004)
        world.net.disconnectHost(world.aliceHost)
        rec = world.alice.events.rec
        assert world.net.runUntil(lambda: rec.count("onLeaveServer") == 1, 5)
        world.net.advance(1)
        self.assertEqual(world.names(rec, "onServerOffline", "onServerOnline",
                                     "onLeaveServer"), ["onServerOffline", "onLeaveServer"])
        self.assertEqual(world.alice.getLocalHostID(), 0)

    def test_disconnectInOnServerOfflineLeavesWithoutAnAttempt(self):
        """A game that gives up in C{onServerOffline} (calls C{disconnect()})
        leaves at once; no resume attempt follows."""
        world = RecoveryWorld(self)
        alice = world.alice
        alice.events.onServerOffline = lambda reason: alice.disconnect()
        attempts = []
        self.patch(type(alice._engine), "_tryResume", lambda engine: attempts.append(1))
        world.net.disconnectHost(world.aliceHost)
        rec = alice.events.rec
        assert world.net.runUntil(lambda: rec.count("onLeaveServer") == 1, 5)
        world.net.advance(3)
        self.assertEqual(attempts, [])
        self.assertEqual(alice.getLocalHostID(), 0)
        self.assertIsNone(alice._engine._reconnect)


class CutClientTests(SynchronousTestCase):

    def test_aClientCutForCauseCannotResumeBeforeItsConnectionIsGone(self):
        """The server aborts a client's connection for cause (a protocol
        error, a slow consumer); the abort completes a moment later. A
        cheater whose second connection has its challenge ready answers it
        in that same moment: the session is not taken over, it ends."""
        world = RecoveryWorld(self)
        engine = world.server._engine
        probe = _probe(self, world, world.aliceID, None,
                       lambda p: any(n == "RESUME_CHALLENGE" for n, _ in p.got))
        nonce = next(f.nonce for n, f in probe.got if n == "RESUME_CHALLENGE")
        [waiting] = [c for c in engine._connections if c.resumeNonce is not None]
        old = engine._clients[world.aliceID]
        old.protocolError(ProtocolError("a garbled frame"))
        # Its RESUME is read in the same reactor turn as the abort.
        waiting.frameReceived(probe.channel.seal(encodeMessage(
            "RESUME", hostID=world.aliceID, received=0, proof=_aliceProof(world)(nonce))))
        assert world.net.runUntil(lambda: probe.closed, 5)
        self.assertEqual([f.reason for n, f in probe.got if n == "RESUME_REFUSED"],
                         [ResumeRefusal.UNKNOWN_SESSION])
        events = world.serverEvents.rec
        assert world.net.runUntil(lambda: events.count("onClientLeave") == 1, 5)
        self.assertEqual(events.named("onClientLeave")[0][1], ErrorType.PROTOCOL_ERROR)
        self.assertEqual(events.count("onClientOnline"), 0)
        self.assertEqual(world.server.getClientHostIDs(), [world.bobID])

    def test_acknowledgingWhatWasNeverSentEndsTheSessionForGood(self):
        """A STREAM_ACK beyond what the server sent is a protocol error: the
        client is cut (C{HackKind.BAD_MESSAGE}) and leaves; its peers see it
        leave, not go offline. One that goes backwards changes nothing."""
        world = RecoveryWorld(self)
        engine = world.server._engine
        alice = world.alice._engine
        world.server.send(world.aliceID, b"one")
        assert world.net.runUntil(lambda: world.alice.events.messagesFrom(1) == [b"one"], 5)
        stream = engine._clients[world.aliceID].stream
        assert world.net.runUntil(lambda: stream.acknowledged == stream.sent, 5)
        alice._connection.sendMessage("STREAM_ACK", received=0)     # backwards
        world.net.advance(0.1)
        self.assertIs(engine._clients[world.aliceID].stream, stream)
        self.assertEqual(stream.acknowledged, stream.sent)
        alice._connection.sendMessage("STREAM_ACK", received=stream.sent + 1)
        events = world.serverEvents.rec
        assert world.net.runUntil(lambda: events.count("onClientLeave") == 1, 5)
        self.assertEqual(events.named("onClientLeave")[0][1], ErrorType.PROTOCOL_ERROR)
        self.assertEqual(events.count("onClientOffline"), 0)
        self.assertEqual(world.server.stats.hackReports, {"BAD_MESSAGE": 1})
        assert world.net.runUntil(
            lambda: world.bob.events.rec.count("onP2PMemberLeave") == 1, 5)
        self.assertEqual(world.names(world.bob.events.rec, "onP2PMemberOffline",
                                     "onP2PMemberLeave"), ["onP2PMemberLeave"])


class OfflinePeerTests(SynchronousTestCase):

    def test_aCheaterCanEndAnOfflinePeersSessionButNothingMore(self):
        """What docs/security.rst admits: an offline member's resend buffer
        is one for all senders, so a cheater relaying raw reliable frames
        to it past C{maxClientOutput} ends its session (C{SLOW_CONSUMER}),
        as if it had stopped reading; the buffer never exceeds the bound,
        and the cheater and the server carry on."""
        budget = 80_000
        world = RecoveryWorld(self, maxClientOutput=budget)
        engine = world.server._engine
        world.net.partition(world.aliceHost, world.serverHost)
        events = world.serverEvents.rec
        assert world.net.runUntil(lambda: events.count("onClientOffline") == 1, 10)
        session = engine._clients[world.aliceID]
        cheater = world.bob._engine
        held = []
        for _ in range(12):
            cheater.sendToServerTcp(relay.encodeTcpRelayRequest(
                [world.aliceID], relay.FLAG_RELIABLE, bytes(10_000)))
            world.net.advance(0.05)
            held.append(session.stream.unacknowledgedBytes if session.stream else 0)
        self.assertLessEqual(max(held), budget)
        assert world.net.runUntil(lambda: events.count("onClientLeave") == 1, 5)
        self.assertEqual(events.named("onClientLeave")[0][1], ErrorType.SLOW_CONSUMER)
        self.assertEqual(world.server.getClientHostIDs(), [world.bobID])
        self.assertEqual(world.bob.events.rec.count("onServerOffline"), 0)
        self.assertEqual(engine._offline, 0)
        world.net.heal(world.aliceHost, world.serverHost)


class RawClient(Protocol):
    """A hand-made client without encryption: writes the frame bodies it is
    given and records the messages it gets."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder(1 << 20)
        self.got = []
        self.closed = False
        self.transport = None

    def send(self, body: bytes) -> None:
        self.transport.write(encodeFrame(body))

    def dataReceived(self, data: bytes) -> None:
        for body in self.decoder.feed(data):
            try:
                self.got.append(decodeMessage(body))
            except ProtocolError:
                self.got.append(("?", body))

    def connectionLost(self, reason) -> None:
        self.closed = True

    def named(self, name: str) -> list:
        return [fields for kind, fields in self.got if kind == name]


_IDS = st.integers(0, 2**32 - 1)
_COUNTS = st.one_of(st.integers(0, 100), st.sampled_from([2**63, 2**64 - 1]))


def _recoveryMessage(hostIDs):
    """A strategy of frame bodies of the recovery messages (wire types
    40-49): well-formed with hostile fields, or garbage after the type."""
    ids = st.one_of(st.sampled_from(hostIDs), _IDS)
    wellFormed = st.one_of(
        st.builds(lambda n: encodeMessage("STREAM_ACK", received=n), _COUNTS),
        st.builds(lambda w, s: encodeMessage("RECOVERY", windowMs=w, resumeSecret=s),
                  st.integers(0, 2**32 - 1), st.binary(max_size=40)),
        st.builds(lambda v, h: encodeMessage("RESUME_REQUEST", wireVersion=v, hostID=h),
                  st.sampled_from([WIRE_VERSION, 0, 255]), ids),
        st.builds(lambda n: encodeMessage("RESUME_CHALLENGE", nonce=n),
                  st.binary(min_size=16, max_size=16)),
        st.builds(lambda h, n, p: encodeMessage("RESUME", hostID=h, received=n, proof=p),
                  ids, _COUNTS, st.binary(min_size=32, max_size=32)),
        st.builds(lambda n: encodeMessage("RESUME_ACCEPTED", received=n), _COUNTS),
        st.builds(lambda r: encodeMessage("RESUME_REFUSED", reason=r), st.integers(0, 255)),
        st.builds(lambda h: encodeMessage("MEMBER_OFFLINE", memberID=h), ids),
        st.builds(lambda h: encodeMessage("MEMBER_ONLINE", memberID=h), ids),
        st.just(encodeMessage("SESSION_ENDED")),
    )
    garbage = st.builds(lambda kind, rest: bytes([kind]) + rest,
                        st.integers(40, 49), st.binary(max_size=48))
    return st.one_of(wellFormed, garbage)


class RecoveryMessageFuzzTests(SynchronousTestCase):
    """Hostile sequences of the recovery messages, before and after a join,
    from connections of their own, and a cheater's own resumes with any
    count it likes: the server drops or refuses them, crashes nowhere, keeps
    its offline bookkeeping straight, and its honest clients notice nothing."""

    def test_hostileRecoveryMessagesHarmNoOne(self):
        failures = watchFailures(self)
        world = RecoveryWorld(self, encryption=False, maxOfflineClients=3)
        engine = world.server._engine
        hosts = itertools.count(1)

        def connect() -> RawClient:
            client = RawClient()
            n = next(hosts)
            host = world.net.addHost(f"10.{n // 250}.{n % 250}.1")
            host.connectTCP(SERVER_IP, 33333, ClientFactory.forProtocol(lambda: client))
            assert world.net.runUntil(lambda: client.transport is not None, 5)
            return client

        @settings(max_examples=300, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(join=st.booleans(), bodies=st.lists(_recoveryMessage(
                   [world.aliceID, world.bobID]), max_size=6),
               resumeAs=st.sampled_from([None, "self", "alice"]),
               received=st.one_of(st.just(0), _COUNTS))
        def attack(join, bodies, resumeAs, received):
            cheater = holder = connect()
            second = None
            if join:
                cheater.send(encodeMessage("HELLO", wireVersion=WIRE_VERSION,
                                           protocolVersion=VERSION.bytes, userData=b""))
                assert world.net.runUntil(lambda: cheater.named("JOIN_ACCEPTED"), 5)
            if join and resumeAs is not None:
                # A second connection resumes the cheater's session (with its
                # real secret) or alice's (with that secret: a wrong key).
                hostID = cheater.named("JOIN_ACCEPTED")[0].hostID
                secret = cheater.named("RECOVERY")[0].resumeSecret
                target = hostID if resumeAs == "self" else world.aliceID
                second = connect()
                second.send(encodeMessage("RESUME_REQUEST", wireVersion=WIRE_VERSION,
                                          hostID=target))
                assert world.net.runUntil(lambda: second.named("RESUME_CHALLENGE"), 5)
                nonce = second.named("RESUME_CHALLENGE")[0].nonce
                second.send(encodeMessage("RESUME", hostID=target, received=received,
                                          proof=resumeProof(secret, target, nonce)))
                world.net.advance(0.1)
                accepted = len(second.named("RESUME_ACCEPTED"))
                if resumeAs == "alice":
                    self.assertEqual([f.reason for f in second.named("RESUME_REFUSED")],
                                     [ResumeRefusal.BAD_PROOF])
                elif received == 0:
                    # Its true count (the server sent it nothing counted):
                    # the session moves, the old connection is cut.
                    self.assertEqual(accepted, 1)
                    self.assertEqual(engine._clients[hostID].transport.getPeer().host,
                                     second.transport.getHost().host)
                    holder = second
                else:
                    # A count the server never sent: refused, the session stays.
                    self.assertEqual(accepted, 0)
                    self.assertTrue(second.closed)
                    self.assertFalse(cheater.closed)
            for body in bodies:
                if not holder.closed:
                    holder.send(body)
            world.net.advance(0.1)
            for client in (cheater, second):
                if client is not None and not client.closed:
                    client.transport.loseConnection()
            world.net.advance(0.2)
            # The offline bookkeeping holds.
            offline = [c for c in engine._clients.values() if c.offlineTimer is not None]
            self.assertEqual(engine._offline, len(offline))
            self.assertLessEqual(engine._offline, engine.maxOfflineClients)
            self.assertGreaterEqual(engine._unauthenticated, 0)

        attack()
        self.assertEqual([formatEvent(e) for e in failures], [])
        self.assertEqual(world.serverEvents.rec.count("onException"), 0)
        # The honest clients noticed nothing, and a message still gets through.
        self.assertEqual(world.alice.events.rec.count("onServerOffline"), 0)
        self.assertEqual(world.bob.events.rec.count("onServerOffline"), 0)
        world.server.send(world.aliceID, b"still here")
        world.bob.send(world.aliceID, b"from bob")
        assert world.net.runUntil(
            lambda: world.alice.events.messagesFrom(1) == [b"still here"]
            and world.alice.events.messagesFrom(world.bobID) == [b"from bob"], 5)
        self.assertGreater(world.server.stats.malformedMessages, 0)
        self.assertGreater(world.server.stats.resumesRefused, 0)
        self.assertGreater(world.server.stats.clientsResumed, 0)
