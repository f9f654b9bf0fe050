"""Receive buffers charge what they really cost (tracemalloc), within caps per
session (bytes, partial messages) and per server (a shared ReceiveBudget)."""

from __future__ import annotations

import gc
import tracemalloc

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import rudp
from proud_twisted._glue.sessiondriver import SessionDriver
from proud_twisted.rudp import DeliveryMode, ReceiveBudget, ReliableSession, SessionConfig
from proud_twisted.rudp import frames as F
from proud_twisted.rudp.reassembly import PARTIAL_OVERHEAD, PIECE_OVERHEAD, REORDER_OVERHEAD

try:
    from .test_rudp_helpers import Link, drainEvents, numbered
except ImportError:
    from test_rudp_helpers import Link, drainEvents, numbered

CONFIG = SessionConfig(checksum=False)
SPARE = CONFIG.maxReceiveBufferBytes - CONFIG.maxMessageLength
"""What a session may hold beyond the reliable message it reassembles in order."""
UNCOUNTED = SessionConfig(checksum=False, maxPartialMessages=10**6)
"""Only the bytes bound partial messages."""
TWO = b"xy"
"""Hostile payloads are two bytes: a one-byte slice is a cached object."""


def datagrams(frames: list[bytes], firstPn: int = 0) -> list[bytes]:
    """The encoded ``frames`` packed into datagrams of at most one MTU."""
    out: list[bytes] = []
    batch: list[bytes] = []
    size = F.HEADER_SIZE
    for frame in [*frames, b""]:
        if batch and (not frame or size + len(frame) > CONFIG.mtu):
            out.append(F.encodeDatagram(firstPn + len(out), batch, False))
            batch, size = [], F.HEADER_SIZE
        batch.append(frame)
        size += len(frame)
    return out


def feed(session: ReliableSession, data: list[bytes], now: float = 0.001) -> list:
    for datagram in data:
        session.receiveDatagram(datagram, now)
    return drainEvents(session)


def retained(sessions: list[ReliableSession], data: list[bytes]) -> int:
    """Bytes (per tracemalloc) the sessions keep from taking ``data``."""
    gc.collect()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for session in sessions:
            feed(session, data)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        if started:
            tracemalloc.stop()


def accounted(sessions: list[ReliableSession]) -> int:
    return sum(session.stats.receiveBufferBytes for session in sessions)


def partials(count: int, ftype: int = F.FT_UNRELIABLE_FRAGMENT, pieces: int = 1) -> list[bytes]:
    """Fragments of unreliable messages that declare 64 KiB and never complete."""
    return [F.packFragment(ftype, 0, 1000 + i // pieces, TWO, 65536, 1000 + 2 * (i % pieces))
            for i in range(count)]


def afterGap(count: int, payload: bytes = TWO, fragment: bool = True) -> list[bytes]:
    """Reliable frames numbered from 1: held until 0 comes, which it never does."""
    if fragment:
        return [F.packFragment(F.FT_RELIABLE_FRAGMENT, 0, 1 + i, payload, 65536, 1000 + i)
                for i in range(count)]
    return [F.packWhole(F.FT_RELIABLE, 0, 1 + i, payload) for i in range(count)]


def inOrder(count: int) -> list[bytes]:
    """In-order fragments of a 64 KiB reliable message that never completes."""
    return [F.packFragment(F.FT_RELIABLE_FRAGMENT, 0, i, TWO, 65536, 2 * i)
            for i in range(count)]


class Accounting(SynchronousTestCase):
    """For each hostile pattern, accounted and real bytes agree within 2x, and
    the real stay near the cap."""

    def check(self, frames: list[bytes], cap: int, config: SessionConfig = CONFIG,
              sessions: int = 1, budget: ReceiveBudget | None = None) -> None:
        held = [ReliableSession(config, 0.0, budget) for _ in range(sessions)]
        real = retained(held, datagrams(frames))
        charged = accounted(held)
        self.assertLessEqual(charged, cap)
        self.assertGreater(charged, cap // 10)
        self.assertTrue(charged / 2 <= real <= charged * 2, f"real {real}, accounted {charged}")
        self.assertLessEqual(real, cap * 3 // 2)

    def test_partialMessagesCountCapped(self) -> None:
        cap = CONFIG.maxPartialMessages * (PARTIAL_OVERHEAD + PIECE_OVERHEAD + len(TWO))
        for ftype in (F.FT_UNRELIABLE_FRAGMENT, F.FT_LATEST_FRAGMENT):
            self.check(partials(2000, ftype), cap)

    def test_partialMessagesByteCapped(self) -> None:
        for pieces in (1, 4, 32):
            self.check(partials(12000, pieces=pieces), SPARE, UNCOUNTED)

    def test_outOfOrderReliable(self) -> None:
        self.check(afterGap(6000), SPARE)
        self.check(afterGap(6000, fragment=False), SPARE)
        self.check(afterGap(2000, b"x" * 1000, fragment=False), SPARE)

    def test_inOrderReassembly(self) -> None:
        self.check(inOrder(30000), CONFIG.maxMessageLength)

    def test_sharedBudget(self) -> None:
        budget = ReceiveBudget(300_000)
        self.check(afterGap(2000) + partials(2000), 300_000, UNCOUNTED, 5, budget)
        self.assertLessEqual(budget.usedBytes, 300_000)


class Caps(SynchronousTestCase):

    def test_partialCountEvictsTheOldest(self) -> None:
        session = ReliableSession(SessionConfig(checksum=False, maxPartialMessages=8))
        halves = [[F.packFragment(F.FT_UNRELIABLE_FRAGMENT, 0, i, numbered(i, 100)[at:at + 50],
                                  100, at) for i in range(100)] for at in (0, 50)]
        self.assertEqual(feed(session, datagrams(halves[0])), [])
        self.assertLessEqual(session.stats.receiveBufferBytes,
                             8 * (PARTIAL_OVERHEAD + PIECE_OVERHEAD + 50))
        events = feed(session, datagrams(halves[1][92:], 100))
        self.assertEqual([e.payload for e in events], [numbered(i, 100) for i in range(92, 100)])
        self.assertEqual(session.stats.receiveBufferBytes, 0)
        self.assertEqual(feed(session, datagrams(halves[1][:8], 200)), [])

    def test_sharedBudgetCapsTheSum(self) -> None:
        budget = ReceiveBudget(100_000)
        sessions = [ReliableSession(UNCOUNTED, 0.0, budget) for _ in range(4)]
        for session in sessions:
            feed(session, datagrams(afterGap(300) + partials(300)))
        self.assertEqual(budget.usedBytes, accounted(sessions))
        self.assertGreater(budget.usedBytes, 90_000)
        self.assertLessEqual(budget.usedBytes, 100_000)
        # The first session took nearly all: the others fit in what was left.
        self.assertLess(accounted(sessions[1:]), 1000)

    def test_fillingTheGapReleasesTheCharge(self) -> None:
        budget = ReceiveBudget(SPARE)
        session = ReliableSession(CONFIG, 0.0, budget)
        feed(session, datagrams(afterGap(100, fragment=False)))
        self.assertGreater(budget.usedBytes, 0)
        events = feed(session, datagrams([F.packWhole(F.FT_RELIABLE, 0, 0, b"0")], 100))
        self.assertEqual(len(events), 101)
        self.assertEqual((budget.usedBytes, session.stats.receiveBufferBytes), (0, 0))

    def test_inOrderIsReservedOutsideTheSharedBudget(self) -> None:
        """A full shared budget cannot stall a session's in-order progress."""
        budget = ReceiveBudget(0)
        link = Link(ReliableSession(CONFIG, 0.0, budget), ReliableSession(CONFIG, 0.0, budget),
                    reorder=0.3, loss=0.05, seed=4)
        messages = [numbered(i, 20000) for i in range(10)]
        for message in messages:
            link.sessions[0].send(message, 0.0)
        link.run(lambda lk: len(lk.messages(1)) == len(messages))
        self.assertEqual(link.messages(1), messages)
        self.assertEqual(budget.usedBytes, 0)

    def test_closeAndExpiryReturnTheCharge(self) -> None:
        budget = ReceiveBudget(10 * SPARE)
        sessions = [ReliableSession(CONFIG, 0.0, budget) for _ in range(3)]
        for session in sessions:
            feed(session, datagrams(afterGap(200) + partials(50)))
        sessions[0].close()
        self.assertEqual(budget.usedBytes, accounted(sessions[1:]))
        feed(sessions[0], datagrams(afterGap(200), 100))
        self.assertEqual(budget.usedBytes, accounted(sessions[1:]))
        sessions[1].handleTimeout(CONFIG.unreliableReassemblyTimeout + 1)
        self.assertEqual(sessions[1].stats.receiveBufferBytes, 200 * (len(TWO) + REORDER_OVERHEAD))
        self.assertEqual(budget.usedBytes, accounted(sessions[1:]))
        for session in sessions[1:]:
            session.close()
        self.assertEqual(budget.usedBytes, 0)

    def test_driverClosesItsCharge(self) -> None:
        clock = task.Clock()
        budget = ReceiveBudget(SPARE)
        sent: list[bytes] = []
        driver = SessionDriver(clock, sent.append, lambda event: None, CONFIG,
                               receiveBudget=budget)
        for datagram in datagrams(afterGap(100) + partials(10)):
            driver.receiveDatagram(datagram)
        self.assertEqual(budget.usedBytes, driver.stats.receiveBufferBytes)
        self.assertGreater(budget.usedBytes, 0)
        driver.close()
        self.assertEqual(budget.usedBytes, 0)
        self.assertEqual(clock.getDelayedCalls(), [])


class HonestTraffic(SynchronousTestCase):
    """Under tight caps, honest traffic still arrives in full."""

    def test_bigReliableAndFragmentedUnreliable(self) -> None:
        budget = ReceiveBudget(SPARE)
        config = SessionConfig(maxPartialMessages=4)
        link = Link(ReliableSession(config, 0.0, budget), ReliableSession(config, 0.0, budget),
                    reorder=0.2, loss=0.03, seed=7)
        big = [numbered(i, config.maxMessageLength - i) for i in range(12)]
        for message in big:
            link.sessions[0].send(message, 0.0)
        link.run(lambda lk: len(lk.messages(1)) == len(big))
        self.assertEqual(link.messages(1), big)
        unreliable = [numbered(i, 5000) for i in range(20)]
        for message in unreliable:
            link.sessions[0].send(message, link.now, DeliveryMode.UNRELIABLE)
        link.reorder = link.loss = (0.0, 0.0)
        link.settle(2.0)
        self.assertEqual(link.messages(1, DeliveryMode.UNRELIABLE), unreliable)
        self.assertEqual(budget.usedBytes, 0)

    def test_manySmallMessagesReordered(self) -> None:
        budget = ReceiveBudget(32 * 1024)
        link = Link(ReliableSession(CONFIG, 0.0, budget), ReliableSession(CONFIG, 0.0, budget),
                    reorder=0.3, reorderDelay=0.05, loss=0.05, seed=3)
        messages = [numbered(i, 8 + i % 300) for i in range(5000)]
        for message in messages:
            link.sessions[0].send(message, 0.0)
        link.run(lambda lk: len(lk.messages(1)) == len(messages))
        self.assertEqual(link.messages(1), messages)
        self.assertEqual(budget.usedBytes, 0)


class Api(SynchronousTestCase):

    def test_exportedAndValidated(self) -> None:
        self.assertIn("ReceiveBudget", rudp.__all__)
        self.assertEqual(CONFIG.maxPartialMessages, 256)
        self.assertRaises(ValueError, ReceiveBudget, -1)
        self.assertRaises(ValueError, SessionConfig, maxPartialMessages=0)
