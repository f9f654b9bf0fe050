"""Properties of ReliableSession over random lossy links and random garbage."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.errors import ProtocolError
from proud_twisted.rudp import (
    DeliveryMode,
    MessageReceived,
    Priority,
    ReliableSession,
    SessionConfig,
)

try:
    from .test_rudp_helpers import Feeder, Link, numbered
except ImportError:
    from test_rudp_helpers import Feeder, Link, numbered

R, U, L = DeliveryMode.RELIABLE, DeliveryMode.UNRELIABLE, DeliveryMode.UNRELIABLE_LATEST
PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

sizes = st.one_of(st.integers(4, 300), st.integers(4, 5000), st.integers(4, 30000))
messages = st.lists(
    st.tuples(sizes, st.sampled_from([R, R, U, L]), st.sampled_from(list(Priority)),
              st.integers(0, 2)),
    max_size=25)
configs = st.builds(
    lambda mtu, spare, queue, checksum: SessionConfig(
        mtu=mtu, maxMessageLength=30000, maxReceiveBufferBytes=30000 + spare,
        maxSendQueueBytes=queue, minWindow=2 * mtu, initialWindow=8 * mtu,
        checksum=checksum),
    st.sampled_from([200, 576, 1200]), st.integers(1200, 40000),
    st.integers(30000, 200000), st.booleans())
links = st.fixed_dictionaries(dict(
    seed=st.integers(0, 2**32),
    loss=st.tuples(st.floats(0, 0.35), st.floats(0, 0.35)),
    duplicate=st.floats(0, 0.2),
    jitter=st.floats(0, 0.02),
    reorder=st.floats(0, 0.2),
    latency=st.floats(0.001, 0.1),
))


def tagged(index: int, size: int) -> bytes:
    return numbered(index, max(size, 4))


class Checked(Link):
    """A link that asserts the sessions' bounds after every step."""

    def __init__(self, config: SessionConfig, **options) -> None:
        super().__init__(ReliableSession(config), ReliableSession(config), **options)
        self.config = config
        self.beforeStep.append(Checked.check)

    def datagramsFrom(self, session: ReliableSession) -> list[bytes]:
        """Never more in flight than the window, whenever data goes out."""
        before = session.stats.bytesInFlight
        out = super().datagramsFrom(session)
        stats = session.stats
        if stats.bytesInFlight > before:
            assert stats.bytesInFlight <= stats.window, (stats.bytesInFlight, stats.window)
        return out

    def check(self) -> None:
        config = self.config
        assert self.largest <= config.mtu
        for session in self.sessions:
            stats = session.stats
            assert stats.receiveBufferBytes <= config.maxReceiveBufferBytes
            assert stats.sendQueueBytes <= config.maxSendQueueBytes


def verify(test: SynchronousTestCase, sent: list, received: list) -> None:
    """Reliable: exactly once, in order per priority.  Unreliable: never
    duplicated or damaged.  Latest-only: never backwards per channel."""
    index = {payload: i for i, (payload, _, _, _) in enumerate(sent)}
    got = [e for e in received if isinstance(e, MessageReceived)]
    for event in got:
        test.assertIn(event.payload, index, "damaged or invented message")
        _, mode, _, channel = sent[index[event.payload]]
        test.assertEqual((event.mode, event.channel), (mode, channel))
    reliable = [p for p, mode, _, _ in sent if mode == R]
    gotReliable = [e.payload for e in got if e.mode == R]
    test.assertEqual(sorted(gotReliable), sorted(reliable))
    for priority in Priority:
        want = [p for p, mode, prio, _ in sent if mode == R and prio == priority]
        test.assertEqual([p for p in gotReliable if sent[index[p]][2] == priority], want)
    unreliable = [e.payload for e in got if e.mode != R]
    test.assertEqual(len(unreliable), len(set(unreliable)))
    latest = defaultdict(list)
    for event in got:
        if event.mode == L:
            latest[event.channel].append(index[event.payload])
    for order in latest.values():
        test.assertEqual(order, sorted(order))


class LossyLinks(SynchronousTestCase):

    @PROPERTY
    @given(configs, links, messages, messages)
    def test_streams(self, config, options, forward, backward) -> None:
        sent = [[(tagged(i, s), m, p, c) for i, (s, m, p, c) in enumerate(forward)],
                [(tagged(1000 + i, s), m, p, c) for i, (s, m, p, c) in enumerate(backward)]]
        link = Checked(config, **options)
        feeders = [Feeder(0, sent[0]), Feeder(1, sent[1])]
        link.beforeStep.extend(feeders)
        wanted = [sum(m == R for _, m, _, _ in s) for s in sent]

        def done(link: Link) -> bool:
            return all(f.done for f in feeders) and all(
                len(link.messages(1 - i, R)) == wanted[i] for i in range(2))

        link.run(done, maxTime=5000)
        link.run(lambda lk: not any(s.sendQueueLength or s.stats.bytesInFlight
                                    for s in lk.sessions), maxTime=link.now + 5000)
        link.settle(config.unreliableReassemblyTimeout + 1.0)
        verify(self, sent[0], link.events[1])
        verify(self, sent[1], link.events[0])
        for session in link.sessions:
            self.assertEqual(session.stats.receiveBufferBytes, 0)
            session.close()
            self.assertIsNone(session.nextTimeout())
            self.assertEqual(session.datagramsToSend(link.now), [])


def fingerprint(session: ReliableSession) -> tuple:
    """Everything a rejected datagram must leave untouched."""
    return (dataclasses.astuple(session.stats), repr(session._received._ranges),
            session._received.largest, session._received.ackPending,
            session._reassembly._nextSeq, len(session._events), session.nextTimeout())


garbage = st.one_of(
    st.binary(max_size=1300),
    st.builds(lambda body: b"\x01" + body, st.binary(max_size=200)),
    st.builds(lambda body: b"\x81" + body, st.binary(max_size=200)),
)
mutations = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4)


def mutate(captured: list, which: int, flips: list, cut: int) -> bytes:
    """One of the captured datagrams with bytes overwritten, then shortened
    (``cut < 0``) or padded with zeros."""
    data = bytearray(captured[which % len(captured)])
    for where, value in flips:
        data[where % len(data)] = value
    return bytes(data[:len(data) + cut] if cut < 0 else data + bytes(cut))


class Garbage(SynchronousTestCase):

    def _exchange(self, config: SessionConfig):
        link = Link(ReliableSession(config), ReliableSession(config), seed=1, loss=0.2)
        a = link.sessions[0]
        captured = []
        transmit = link._transmit

        def capture(src, data):
            if src == 0:
                captured.append(data)
            transmit(src, data)

        link._transmit = capture
        for i in range(20):
            a.send(tagged(i, 50 * i), 0.0, (R, U, L)[i % 3], channel=i % 2)
        link.run(lambda lk: len(lk.messages(1, R)) == 7)
        return link, captured

    def _feed(self, session: ReliableSession, data: bytes, now: float) -> bool:
        before = fingerprint(session)
        try:
            session.receiveDatagram(data, now)
        except ProtocolError:
            self.assertEqual(fingerprint(session), before)
            return False
        return True

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.one_of(garbage, st.tuples(st.integers(0, 10**6), mutations,
                                                   st.integers(-3, 3))), max_size=8))
    def test_garbageThenStreamStillWorks(self, inputs) -> None:
        link, captured = self._exchange(SessionConfig())
        a, b = link.sessions
        for item in inputs:
            data = item if isinstance(item, bytes) else mutate(captured, *item)
            self._feed(b, data, link.now)
        link._drain()
        for i in range(20, 40):
            a.send(tagged(i, 40 * i), link.now)
        link.run(lambda lk: len(lk.messages(1, R)) == 27, maxTime=link.now + 60)
        self.assertEqual(link.messages(1, R),
                         [tagged(i, 50 * i) for i in range(0, 20, 3)]
                         + [tagged(i, 40 * i) for i in range(20, 40)])
        unreliable = link.messages(1, U) + link.messages(1, L)
        self.assertEqual(len(unreliable), len(set(unreliable)))

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 10**6), mutations, st.integers(-3, 3)),
                    min_size=1, max_size=8))
    def test_uncheckedMutationsOnlyProtocolError(self, inputs) -> None:
        """Without checksums a mutation may be accepted, but never crashes the
        session or breaks its bounds."""
        config = SessionConfig(checksum=False, maxMessageLength=4000,
                               maxReceiveBufferBytes=8000)
        link, captured = self._exchange(config)
        b = link.sessions[1]
        for item in inputs:
            self._feed(b, mutate(captured, *item), link.now)
            self.assertLessEqual(b.stats.receiveBufferBytes, 8000)
        b.handleTimeout(link.now + 10)
        b.datagramsToSend(link.now + 10)
        b.close()
        self.assertIsNone(b.nextTimeout())
