"""The compiled core's small building blocks: `Fifo` against
`collections.deque`, and the value semantics of the session's events."""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.rudp import (
    COMPILED,
    DeliveryMode,
    MessageReceived,
    PathAlive,
    PathDead,
)
from proud_twisted.rudp.fifo import COMPACT_AFTER, Fifo

# An operation on both queues: append a value, or take the oldest one.
operations = st.lists(st.one_of(st.integers(0, 1000), st.none()), max_size=400)


class FifoTests(SynchronousTestCase):

    @settings(max_examples=200, deadline=None)
    @given(operations)
    def test_behavesLikeADeque(self, ops) -> None:
        fifo: Fifo[int] = Fifo()
        model: deque[int] = deque()
        for op in ops:
            if op is None:
                if model:
                    self.assertEqual(fifo.first(), model[0])
                    self.assertEqual(fifo.popleft(), model.popleft())
                else:
                    self.assertRaises(IndexError, fifo.popleft)
                    self.assertRaises(IndexError, fifo.first)
            else:
                fifo.append(op)
                model.append(op)
            self.assertEqual(len(fifo), len(model))
            self.assertEqual(bool(fifo), bool(model))
            self.assertEqual(list(fifo), list(model))

    def test_takenItemsAreLetGo(self) -> None:
        """A long-lived queue that never empties does not keep every item it
        ever held: the list behind it is cut down as its head moves."""
        fifo: Fifo[int] = Fifo()
        for i in range(10 * COMPACT_AFTER):
            fifo.append(i)
            fifo.append(i)
            fifo.popleft()
        self.assertEqual(len(fifo), 10 * COMPACT_AFTER)
        self.assertLessEqual(len(fifo._items), 2 * len(fifo) + COMPACT_AFTER)

    def test_iterationIsASnapshot(self) -> None:
        fifo = Fifo([1, 2, 3])
        seen = []
        for item in fifo:
            seen.append(item)
            fifo.append(item * 10)
        self.assertEqual(seen, [1, 2, 3])
        fifo.clear()
        self.assertEqual((len(fifo), list(fifo)), (0, []))


class EventValueTests(SynchronousTestCase):

    def test_equalityAndHashFollowTheFields(self) -> None:
        m = MessageReceived(b"x", DeliveryMode.RELIABLE, 3)
        self.assertEqual(m, MessageReceived(b"x", DeliveryMode.RELIABLE, 3))
        self.assertEqual(hash(m), hash(MessageReceived(b"x", DeliveryMode.RELIABLE, 3)))
        self.assertNotEqual(m, MessageReceived(b"x", DeliveryMode.RELIABLE, 4))
        self.assertNotEqual(m, MessageReceived(b"y", DeliveryMode.RELIABLE, 3))
        self.assertNotEqual(m, (b"x", DeliveryMode.RELIABLE, 3))
        self.assertEqual(PathDead(1.5), PathDead(1.5))
        self.assertNotEqual(PathDead(1.5), PathDead(2.0))
        self.assertEqual(PathAlive(), PathAlive())
        self.assertNotEqual(PathAlive(), PathDead(0.0))
        self.assertEqual(len({PathAlive(), PathAlive(), PathDead(1.0)}), 2)

    def test_reprNamesTheFields(self) -> None:
        self.assertEqual(repr(MessageReceived(b"x", DeliveryMode.UNRELIABLE, 1)),
                         "MessageReceived(payload=b'x', mode=<DeliveryMode.UNRELIABLE: 1>,"
                         " channel=1)")
        self.assertEqual(repr(PathDead(0.25)), "PathDead(since=0.25)")
        self.assertEqual(repr(PathAlive()), "PathAlive()")

    def test_patternMatching(self) -> None:
        match MessageReceived(b"hi", DeliveryMode.RELIABLE, 7):
            case MessageReceived(payload, mode, channel):
                self.assertEqual((payload, mode, channel), (b"hi", DeliveryMode.RELIABLE, 7))
            case _:
                self.fail("MessageReceived did not match its own pattern")

    def test_compiledEventsAreImmutable(self) -> None:
        if not COMPILED:
            raise self.skipTest("the pure-Python build leaves immutability to type checkers")
        event = MessageReceived(b"x", DeliveryMode.RELIABLE, 0)
        with self.assertRaises(AttributeError):
            event.payload = b"y"  # type: ignore[misc]
        with self.assertRaises(AttributeError):
            PathDead(1.0).since = 2.0  # type: ignore[misc]
