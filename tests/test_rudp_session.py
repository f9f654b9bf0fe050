"""ReliableSession behaviour, one feature at a time."""

from __future__ import annotations

import dataclasses
import itertools

from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.errors import MessageTooLong, ProtocolError, SendQueueFull
from proud_twisted.rudp import (
    DeliveryMode,
    MessageReceived,
    PathAlive,
    PathDead,
    Priority,
    ReliableSession,
    SessionClosed,
    SessionConfig,
)
from proud_twisted.rudp import frames as F

try:
    from .test_rudp_helpers import Link, drainEvents, numbered, pair
except ImportError:
    from test_rudp_helpers import Link, drainEvents, numbered, pair

R, U, L = DeliveryMode.RELIABLE, DeliveryMode.UNRELIABLE, DeliveryMode.UNRELIABLE_LATEST


def parse(data: bytes):
    return F.parseDatagram(data, 1 << 20, True)


def deliver(datagrams, session: ReliableSession, now: float) -> list:
    for data in datagrams:
        session.receiveDatagram(data, now)
    return drainEvents(session)


class Config(SynchronousTestCase):

    def test_defaults(self) -> None:
        config = SessionConfig()
        self.assertEqual((config.mtu, config.maxMessageLength), (1200, 65536))
        self.assertEqual(config.initialWindow, 16 * 1200)
        self.assertTrue(config.checksum)

    def test_invalid(self) -> None:
        for bad in [dict(mtu=50), dict(minRto=0.5, initialRto=0.2),
                    dict(maxReceiveBufferBytes=1000),
                    dict(minWindow=100), dict(initialWindow=10**9)]:
            self.assertRaises(ValueError, SessionConfig, **bad)


class Fragmentation(SynchronousTestCase):

    def test_datagramsFitMtu(self) -> None:
        for mtu in (128, 576, 1200, 1400):
            config = SessionConfig(mtu=mtu)
            link = pair(config=config)
            sizes = [0, 1, mtu - 20, mtu, mtu + 1, 5000, 65536]
            for i, size in enumerate(sizes):
                link.sessions[0].send(numbered(i, size), link.now, (R, U, L)[i % 3],
                                      channel=i)
            count = len(sizes)
            link.run(lambda lk, count=count: len(lk.events[1]) == count)
            self.assertLessEqual(link.largest, mtu)
            self.assertEqual(sorted(link.messages(1)), sorted(numbered(i, s)
                                                              for i, s in enumerate(sizes)))

    def test_smallMessagesShareDatagrams(self) -> None:
        a = ReliableSession()
        for i in range(100):
            a.send(numbered(i, 10), 0.0)
        out = a.datagramsToSend(0.0)
        self.assertEqual(len(out), 2)
        self.assertEqual(sum(len(parse(d)[3]) for d in out), 100)

    def test_tooLong(self) -> None:
        a = ReliableSession(SessionConfig(maxMessageLength=1000))
        a.send(b"x" * 1000, 0.0)
        self.assertRaises(MessageTooLong, a.send, b"x" * 1001, 0.0)

    def test_unreliableWholeOrNothing(self) -> None:
        """Losing one fragment loses the message; the partial is forgotten."""
        config = SessionConfig(unreliableReassemblyTimeout=0.5)
        a, b = ReliableSession(config), ReliableSession(config)
        a.send(b"u" * 5000, 0.0, U)
        out = a.datagramsToSend(0.0)
        self.assertGreater(len(out), 2)
        self.assertEqual(deliver(out[:1] + out[2:], b, 0.01), [])
        self.assertGreater(b.stats.receiveBufferBytes, 0)
        self.assertEqual(len(b.datagramsToSend(0.02)), 1)
        self.assertAlmostEqual(b.nextTimeout(), 0.51)
        b.handleTimeout(0.51)
        self.assertEqual(b.stats.receiveBufferBytes, 0)
        self.assertIsNone(b.nextTimeout())
        self.assertEqual(deliver(out[1:2], b, 0.6), [])

    def test_unreliablePartialsEvictedWithinBudget(self) -> None:
        config = SessionConfig(maxMessageLength=8000, maxReceiveBufferBytes=8000 + 6000)
        a, b = ReliableSession(config), ReliableSession(config)
        for _ in range(10):
            a.send(b"v" * 4000, 0.0, U)
        out = a.datagramsToSend(0.0)
        held = 0
        for data in out:
            frames = parse(data)[3]
            if all(offset + len(payload) < total for _, _, _, payload, total, offset in frames):
                b.receiveDatagram(data, 0.01)
                held += 1
                self.assertLessEqual(b.stats.receiveBufferBytes, 14000 - 8000)
        self.assertGreater(held, 10)
        self.assertGreater(b.stats.receiveBufferBytes, 3000)
        self.assertEqual(drainEvents(b), [])


class Modes(SynchronousTestCase):

    def test_eventsCarryModeAndChannel(self) -> None:
        link = pair()
        a = link.sessions[0]
        a.send(b"r", 0.0, R, channel=3)
        a.send(b"u", 0.0, U, channel=4)
        a.send(b"l", 0.0, L, channel=5)
        link.run(lambda lk: len(lk.events[1]) == 3)
        self.assertEqual(sorted(link.events[1], key=lambda e: e.channel), [
            MessageReceived(b"r", R, 3), MessageReceived(b"u", U, 4),
            MessageReceived(b"l", L, 5)])
        self.assertEqual(link.sessions[1].stats.messagesDelivered, 3)

    def test_badArguments(self) -> None:
        a = ReliableSession()
        self.assertRaises(ValueError, a.send, b"", 0.0, 7)
        self.assertRaises(ValueError, a.send, b"", 0.0, R, 9)
        self.assertRaises(ValueError, a.send, b"", 0.0, R, Priority.LOW, 256)
        a.send(bytearray(b"ok"), 0.0, 1, 2, 255)

    def test_duplicateDatagramsDeliverOnce(self) -> None:
        a, b = ReliableSession(), ReliableSession()
        a.send(b"r", 0.0, R)
        a.send(b"u", 0.0, U)
        a.send(b"l", 0.0, L)
        a.send(b"f" * 3000, 0.0, U)
        out = a.datagramsToSend(0.0)
        got = deliver(out + out + list(reversed(out)), b, 0.01)
        self.assertEqual(sorted(e.payload for e in got), [b"f" * 3000, b"l", b"r", b"u"])

    def test_unreliableNeverRetransmitted(self) -> None:
        link = pair()
        link.drop = lambda src, data: src == 0
        link.sessions[0].send(b"u" * 3000, 0.0, U)
        link.sessions[0].send(b"w", 0.0, U)
        link.settle(3.0)
        link.drop = None
        link.settle(3.0)
        self.assertEqual(link.messages(1), [])
        self.assertEqual(link.sessions[0].stats.retransmissions, 0)
        self.assertIsNone(link.sessions[0].nextTimeout())

    def test_latestOnlyDropsOlder(self) -> None:
        a, b = ReliableSession(), ReliableSession()
        batches = []
        for i in range(3):
            a.send(bytes([i]), 0.0, L, channel=1)
            a.send(bytes([i]) * 2000, 0.0, L, channel=2)
            batches.append(a.datagramsToSend(0.0))
        got = deliver(batches[1] + batches[0] + batches[2] + batches[0], b, 0.01)
        self.assertEqual([(e.channel, e.payload[:1]) for e in got],
                         [(1, b"\x01"), (2, b"\x01"), (1, b"\x02"), (2, b"\x02")])

    def test_latestQueuedIsReplaced(self) -> None:
        a, b = ReliableSession(), ReliableSession()
        for i in range(5):
            a.send(bytes([i]) * 100, 0.0, L, channel=1)
        a.send(b"other", 0.0, L, channel=2)
        self.assertEqual((a.sendQueueLength, a.sendQueueBytes), (2, 105))
        got = deliver(a.datagramsToSend(0.0), b, 0.01)
        self.assertEqual([e.payload for e in got], [b"\x04" * 100, b"other"])
        a.send(b"", 0.0, L, channel=3)
        a.datagramsToSend(0.0)
        a.send(b"", 0.0, L, channel=3)
        self.assertEqual(a.sendQueueLength, 1)
        a.send(b"x" * 3000, 0.0, L, channel=4)
        a.datagramsToSend(0.0)
        a.send(b"y", 0.0, L, channel=4)
        self.assertEqual((a.sendQueueLength, a.sendQueueBytes), (1, 1))

    def test_latestUpdatesDuringOutageStayBounded(self) -> None:
        config = SessionConfig(initialWindow=2 * 1200)
        a, b = ReliableSession(config), ReliableSession(config)
        a.send(b"r" * 3000, 0.0)
        blocked = a.datagramsToSend(0.0)
        for i in range(5000):
            a.send(numbered(i, 500), 0.0, L, priority=(Priority.HIGH, Priority.LOW)[i % 3 == 0])
        self.assertEqual((a.sendQueueLength, a.sendQueueBytes), (2, 3000 + 500))
        self.assertLess(sum(len(q) for q in a._queue._queues), 200)
        got = deliver(blocked, b, 0.01)
        for data in b.datagramsToSend(0.01):
            a.receiveDatagram(data, 0.02)
        got += deliver(a.datagramsToSend(0.02), b, 0.03)
        self.assertEqual([e.payload for e in got], [b"r" * 3000, numbered(4999, 500)])


class Priorities(SynchronousTestCase):

    def test_higherPriorityGoesFirstWhenWindowFull(self) -> None:
        config = SessionConfig(initialWindow=4 * 1200, minWindow=2 * 1200)
        link = pair(config=config)
        a = link.sessions[0]
        for i in range(10):
            a.send(b"L%d" % i + b"." * 1000, 0.0, priority=Priority.LOW)
        first = a.datagramsToSend(0.0)
        self.assertEqual(len(first), 4)
        for i in range(3):
            a.send(b"M%d" % i + b"." * 1000, 0.0, priority=Priority.MEDIUM)
        for i in range(3):
            a.send(b"H%d" % i + b"." * 1000, 0.0, priority=Priority.HIGH)
        self.assertEqual(a.datagramsToSend(0.0), [])
        for data in first:
            link._order += 1
            link._heap.append((link.now + 0.01, link._order, 1, data))
        link.run(lambda lk: len(lk.events[1]) == 16)
        order = [p.split(b".")[0].decode() for p in link.messages(1)]
        self.assertEqual(order, ["L0", "L1", "L2", "L3", "H0", "H1", "H2", "M0", "M1", "M2",
                                 "L4", "L5", "L6", "L7", "L8", "L9"])

    def test_startedMessageFinishesFirst(self) -> None:
        """Fragments of different messages never interleave."""
        config = SessionConfig(initialWindow=2 * 1200, minWindow=2 * 1200)
        link = pair(config=config)
        a = link.sessions[0]
        a.send(b"big" * 3000, 0.0, priority=Priority.LOW)
        link.pump()
        a.send(b"urgent", 0.0, priority=Priority.HIGH)
        link.run(lambda lk: len(lk.events[1]) == 2)
        self.assertEqual(link.messages(1), [b"big" * 3000, b"urgent"])

    def test_retransmissionsBeforeNewData(self) -> None:
        a, b = ReliableSession(), ReliableSession()
        for i in range(6):
            a.send(numbered(i, 1000), 0.0)
        out = a.datagramsToSend(0.0)
        deliver(out[1:], b, 0.05)
        acks = b.datagramsToSend(0.05)
        a.send(numbered(99, 1000), 0.06)
        for data in acks:
            a.receiveDatagram(data, 0.1)
        again = a.datagramsToSend(0.1)
        firstData = parse(again[0])[3][0]
        self.assertEqual(firstData[3], numbered(0, 1000))
        self.assertEqual(a.stats.retransmissions, 1)
        got = deliver(again, b, 0.15)
        self.assertEqual([e.payload for e in got],
                         [numbered(i, 1000) for i in (0, 1, 2, 3, 4, 5, 99)])


class ReceiveBuffer(SynchronousTestCase):

    def test_beyondBufferNotAcknowledgedThenRetransmitted(self) -> None:
        config = SessionConfig(maxMessageLength=4000, maxReceiveBufferBytes=9000,
                               initialWindow=60 * 1200)
        a, b = ReliableSession(config), ReliableSession(config)
        messages = [numbered(i, 1000) for i in range(40)]
        for m in messages:
            a.send(m, 0.0)
        out = a.datagramsToSend(0.0)
        self.assertEqual(len(out), 40)
        for data in out[1:]:
            b.receiveDatagram(data, 0.01)
            self.assertLessEqual(b.stats.receiveBufferBytes, 9000 - 4000)
        self.assertEqual(drainEvents(b), [])
        acks = b.datagramsToSend(0.01)
        largest, _, first, gaps = parse(acks[-1])[1]
        self.assertEqual((largest, first, gaps), (4, 3, []))
        link = Link(a, b, now=0.02)
        for data in acks:
            a.receiveDatagram(data, 0.02)
        link.run(lambda lk: len(lk.events[1]) == 40)
        self.assertEqual(link.messages(1), messages)
        self.assertGreaterEqual(a.stats.retransmissions, 35)


class BackPressure(SynchronousTestCase):

    def test_sendQueueFull(self) -> None:
        config = SessionConfig(maxSendQueueBytes=10000)
        link = pair(config=config)
        a = link.sessions[0]
        a.send(b"x" * 6000, 0.0)
        a.send(b"y" * 100, 0.0, U)
        self.assertRaises(SendQueueFull, a.send, b"x" * 4000, 0.0)
        self.assertEqual((a.sendQueueLength, a.sendQueueBytes), (2, 6100))
        link.pump()
        self.assertEqual((a.sendQueueLength, a.sendQueueBytes), (0, 6000))
        self.assertRaises(SendQueueFull, a.send, b"x" * 4001, 0.0)
        link.run(lambda lk: a.sendQueueBytes == 0)
        a.send(b"x" * 10000, link.now)
        self.assertEqual(a.stats.sendQueueBytes, 10000)


class Acknowledgements(SynchronousTestCase):

    def test_delayedAck(self) -> None:
        a, b = ReliableSession(), ReliableSession()
        a.send(b"one", 0.0)
        deliver(a.datagramsToSend(0.0), b, 1.0)
        self.assertAlmostEqual(b.nextTimeout(), 1.005)
        self.assertEqual(b.datagramsToSend(1.004), [])
        b.handleTimeout(1.005)
        acks = b.datagramsToSend(1.005)
        self.assertEqual(len(acks), 1)
        _pn, ack, elicits, frames = parse(acks[0])
        self.assertEqual((ack[0], frames, elicits), (0, [], False))
        self.assertIsNone(b.nextTimeout())

    def test_ackEverySecondPacket(self) -> None:
        a, b = ReliableSession(), ReliableSession()
        a.send(b"x" * 2000, 0.0)
        deliver(a.datagramsToSend(0.0), b, 1.0)
        self.assertEqual(b.nextTimeout(), 1.0)

    def test_immediateAckOnGap(self) -> None:
        a, b = ReliableSession(), ReliableSession()
        a.send(b"x" * 3000, 0.0)
        out = a.datagramsToSend(0.0)
        deliver(out[:1], b, 1.0)
        self.assertAlmostEqual(b.nextTimeout(), 1.005)
        deliver(out[2:], b, 1.001)
        self.assertEqual(b.nextTimeout(), 1.001)
        _pn, ack, _, _ = parse(b.datagramsToSend(1.001)[0])
        self.assertEqual(ack[:3], (2, 0, 0))
        self.assertEqual(ack[3], [(0, 0)])

    def test_datagramThatFillsTheWindowAsksForAnImmediateAck(self) -> None:
        """A sender blocked by its window marks its last datagram with a
        PING; the peer acknowledges it at once, not after its delay."""
        config = SessionConfig(initialWindow=3 * 1200, minWindow=1200)
        a, b = ReliableSession(config), ReliableSession(config)
        a.send(b"one", 0.0)
        single = a.datagramsToSend(0.0)
        self.assertEqual(parse(single[0])[2], True)
        for i in range(10):
            a.send(numbered(i, 1000), 0.0)
        out = a.datagramsToSend(0.0)
        self.assertEqual([parse(d)[2] for d in out], [True] * (len(out) - 1) + [F.ACK_NOW])
        self.assertEqual(a.datagramsToSend(0.0), [], "the window is full")
        deliver(single, b, 1.0)
        self.assertAlmostEqual(b.nextTimeout(), 1.0 + config.delayedAckTime)
        self.assertEqual(len(b.datagramsToSend(1.005)), 1)
        deliver(out[:-1], b, 1.01)
        self.assertEqual(len(b.datagramsToSend(1.01)), 1)
        self.assertIsNone(b.nextTimeout())
        deliver(out[-1:], b, 1.02)      # in order, alone: only its PING hurries the ACK
        self.assertEqual(b.nextTimeout(), 1.02)

    def test_piggyback(self) -> None:
        a, b = ReliableSession(), ReliableSession()
        a.send(b"ping", 0.0)
        deliver(a.datagramsToSend(0.0), b, 0.05)
        b.send(b"pong", 0.05)
        out = b.datagramsToSend(0.05)
        self.assertEqual(len(out), 1)
        _pn, ack, _elicits, frames = parse(out[0])
        self.assertIsNotNone(ack)
        self.assertEqual(frames[0][3], b"pong")
        got = deliver(out, a, 0.1)
        self.assertEqual(got, [MessageReceived(b"pong", R, 0)])
        self.assertEqual(a.stats.bytesInFlight, 0)
        self.assertAlmostEqual(a.stats.srtt, 0.1)

    def test_ackOfUnsentPacketRejected(self) -> None:
        a, b = ReliableSession(), ReliableSession()
        a.send(b"x", 0.0)
        deliver(a.datagramsToSend(0.0), b, 0.0)
        ack = F.encodeDatagram(0, [F.packAck(5, 0, 0, [])], True)
        before = dataclasses.asdict(a.stats)
        self.assertRaises(ProtocolError, a.receiveDatagram, ack, 0.1)
        self.assertEqual(dataclasses.asdict(a.stats), before)
        below = F.encodeDatagram(0, [F.packAck(0, 0, 3, [])], True)
        self.assertRaises(ProtocolError, a.receiveDatagram, below, 0.1)
        fresh = ReliableSession()
        self.assertRaises(ProtocolError, fresh.receiveDatagram, ack, 0.1)

    def test_uncheckedDatagramRefused(self) -> None:
        a = ReliableSession(SessionConfig(checksum=False))
        b = ReliableSession()
        a.send(b"x", 0.0)
        self.assertRaises(ProtocolError, b.receiveDatagram, a.datagramsToSend(0.0)[0], 0.0)
        c = ReliableSession(SessionConfig(checksum=False))
        b.send(b"y", 0.0)
        self.assertEqual(deliver(b.datagramsToSend(0.0), c, 0.0), [MessageReceived(b"y", R, 0)])


class Loss(SynchronousTestCase):

    def test_fastRetransmitBeforeTimeout(self) -> None:
        link = pair(latency=0.02)
        a = link.sessions[0]
        dropped = []

        def dropFirst(src, data):
            if src == 0 and not dropped:
                dropped.append(data)
                return True
            return False

        link.drop = dropFirst
        for i in range(10):
            a.send(numbered(i, 1000), 0.0)
        link.run(lambda lk: len(lk.events[1]) == 10)
        self.assertLess(link.now, 0.1)
        self.assertEqual(link.messages(1), [numbered(i, 1000) for i in range(10)])
        self.assertEqual(a.stats.retransmissions, 1)
        self.assertEqual(a.stats.datagramsLost, 1)

    def test_tailLossRecoveredByTimeout(self) -> None:
        link = pair(latency=0.02)
        a = link.sessions[0]
        link.drop = lambda src, data: src == 0 and link.now < 0.001
        a.send(b"only", 0.0)
        link.run(lambda lk: len(lk.events[1]) == 1)
        self.assertAlmostEqual(link.now, 0.2 + 0.005 + 0.02)
        self.assertEqual(a.stats.retransmissions, 1)

    def test_windowShrinksOncePerRecovery(self) -> None:
        link = pair(latency=0.02)
        a = link.sessions[0]
        count = [0]

        def dropSome(src, data):
            count[0] += src == 0
            return src == 0 and count[0] in (2, 4, 6)

        link.drop = dropSome
        cuts = []               # (ssthresh, window) whenever ssthresh changed
        last = [a._cc.ssthresh]

        def watch(link):
            cc = a._cc
            if cc.ssthresh != last[0]:
                cuts.append((cc.ssthresh, cc.window))
                last[0] = cc.ssthresh

        link.beforeStep.append(watch)
        for i in range(12):
            a.send(numbered(i, 1000), 0.0)
        link.run(lambda lk: len(lk.events[1]) == 12)
        self.assertEqual(a.stats.datagramsLost, 3)
        self.assertEqual(len(cuts), 1, "three losses, one recovery period")
        (ssthresh, window), = cuts
        self.assertEqual(ssthresh, window)
        self.assertLess(ssthresh, float("inf"))


class Wraparound(SynchronousTestCase):

    def test_countersCross32Bits(self) -> None:
        """Packet numbers, reliable and latest-only sequence numbers wrap on
        the wire (32 bits) without a hiccup."""
        link = pair(loss=0.1, seed=4, jitter=0.005)
        a, b = link.sessions
        start = 2**32 - 20
        a._nextPn = start
        b._received.largest = start - 1
        a._queue._nextReliableSeq = start
        b._reassembly._nextSeq = start
        a._queue._latestSeq[0] = 2**32 - 10
        reliable = [numbered(i, 700 + i * 37) for i in range(60)]
        for i, payload in enumerate(reliable):
            a.send(payload, 0.0)
            a.send(numbered(1000 + i, 10), 0.0, L)
            link.settle(0.002)
        link.run(lambda lk: len(lk.messages(1, R)) == 60)
        self.assertEqual(link.messages(1, R), reliable)
        latest = link.messages(1, L)
        self.assertEqual(latest, sorted(latest))
        self.assertGreater(len(latest), 10)
        self.assertGreater(a._nextPn, 2**32)


class RttOnLink(SynchronousTestCase):

    def test_srttMatchesLatency(self) -> None:
        link = pair(latency=0.05)
        a = link.sessions[0]
        for i in range(200):
            a.send(numbered(i, 500), 0.0)
        link.run(lambda lk: len(lk.events[1]) == 200)
        self.assertLess(abs(a.stats.srtt - 0.1), 0.002)
        self.assertGreaterEqual(a.stats.rto, SessionConfig().minRto)


class DeadPath(SynchronousTestCase):

    def test_deadThenAlive(self) -> None:
        config = SessionConfig(deadPathTimeout=3.0)
        link = pair(config=config, latency=0.02)
        a = link.sessions[0]
        a.send(b"before", 0.0)
        link.run(lambda lk: len(lk.events[1]) == 1 and not a.stats.bytesInFlight)
        sends = []
        link.drop = lambda src, data: src == 0 and not sends.append(link.now)
        start = link.now
        a.send(b"during", link.now)
        link.run(lambda lk: any(isinstance(e, PathDead) for e in lk.events[0]))
        dead = [e for e in link.events[0] if isinstance(e, PathDead)]
        self.assertEqual(len(dead), 1)
        self.assertAlmostEqual(dead[0].since, start)
        self.assertAlmostEqual(link.now, start + 3.0)
        link.settle(10.0)
        gaps = [y - x for x, y in itertools.pairwise(sends)]
        self.assertLessEqual(max(gaps), config.maxRto + 1e-9)
        self.assertEqual(max(gaps), config.maxRto)
        self.assertEqual(len([e for e in link.events[0] if isinstance(e, PathDead)]), 1)
        link.drop = None
        link.run(lambda lk: b"during" in lk.messages(1))
        link.settle(0.5)
        self.assertEqual([type(e) for e in link.events[0]], [PathDead, PathAlive])
        self.assertLess(link.now, start + 13.0 + config.maxRto + 0.1)

    def test_nothingOutstandingNeverDead(self) -> None:
        a = ReliableSession()
        self.assertIsNone(a.nextTimeout())
        a.handleTimeout(100.0)
        self.assertIsNone(a.nextEvent())

    def test_windowRecoversAfterOutage(self) -> None:
        link = pair(latency=0.02)
        a = link.sessions[0]
        link.drop = lambda src, data: 0.1 < link.now < 5.0
        messages = [numbered(i, 1000) for i in range(3000)]
        for m in messages[:2000]:
            a.send(m, 0.0)
        link.run(lambda lk: lk.now > 5.0)
        self.assertEqual(a.stats.window, SessionConfig().minWindow)
        for m in messages[2000:]:
            a.send(m, link.now)
        link.run(lambda lk: len(lk.events[1]) == 3000)
        self.assertEqual(link.messages(1), messages)
        self.assertGreater(a.stats.window, SessionConfig().initialWindow)


class PathChange(SynchronousTestCase):

    def test_resendsPromptlyAndResets(self) -> None:
        a, b = ReliableSession(), ReliableSession()
        a.send(b"warm", 0.0)
        deliver(a.datagramsToSend(0.0), b, 0.05)
        for data in b.datagramsToSend(0.06):
            a.receiveDatagram(data, 0.1)
        self.assertIsNotNone(a.stats.srtt)
        for i in range(5):
            a.send(numbered(i, 1000), 0.2)
        lost = a.datagramsToSend(0.2)
        self.assertEqual(len(lost), 5)
        a.pathChanged(0.3)
        stats = a.stats
        self.assertEqual((stats.srtt, stats.rto, stats.window, stats.bytesInFlight),
                         (None, 0.2, SessionConfig().initialWindow, 0))
        again = a.datagramsToSend(0.3)
        self.assertEqual(len(again), 5)
        got = deliver(again, b, 0.35)
        self.assertEqual([e.payload for e in got], [numbered(i, 1000) for i in range(5)])
        self.assertEqual(deliver(lost, b, 0.4), [])


class Close(SynchronousTestCase):

    def test_closeDropsEverything(self) -> None:
        link = pair()
        a, b = link.sessions
        for i in range(50):
            a.send(numbered(i, 3000), 0.0)
        link.step()
        link.step()
        a.close()
        b.close()
        self.assertTrue(a.closed)
        self.assertIsNone(a.nextTimeout())
        self.assertEqual(a.datagramsToSend(1.0), [])
        self.assertRaises(SessionClosed, a.send, b"x", 1.0)
        a.receiveDatagram(b"garbage", 1.0)
        a.handleTimeout(2.0)
        a.pathChanged(2.0)
        self.assertIsNone(a.nextEvent())
        self.assertEqual((a.sendQueueLength, a.sendQueueBytes), (0, 0))
        self.assertEqual(b.stats.receiveBufferBytes, 0)


class Link_(SynchronousTestCase):
    """Cross-checks that the link helper itself reports sizes."""

    def test_largest(self) -> None:
        link = Link(ReliableSession(), ReliableSession())
        link.sessions[0].send(b"x" * 70, 0.0)
        link.pump()
        self.assertEqual(link.largest, 9 + 8 + 70)
