"""Long runs: thousands of messages over very lossy links and a path switch."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.rudp import DeliveryMode, PathDead, Priority

try:
    from .test_rudp_helpers import Feeder, Link, logUniformSizes, numbered, pair
except ImportError:
    from test_rudp_helpers import Feeder, Link, logUniformSizes, numbered, pair

R, U = DeliveryMode.RELIABLE, DeliveryMode.UNRELIABLE


def stream(seed: int, count: int, largest: int = 65536) -> list:
    sizes = logUniformSizes(random.Random(seed), count, largest)
    return [(numbered(i, size), R, Priority.MEDIUM, 0) for i, size in enumerate(sizes)]


class Lossy(SynchronousTestCase):

    def _transfer(self, loss: float, seed: int) -> Link:
        messages = stream(seed, 10000)
        link = pair(seed=seed, loss=loss, latency=0.02, jitter=0.005, reorder=0.01)
        feeder = Feeder(0, messages)
        link.beforeStep.append(feeder)
        link.run(lambda lk: len(lk.events[1]) >= len(messages), maxTime=1e5)
        self.assertEqual(link.messages(1), [m[0] for m in messages])
        self.assertLessEqual(link.largest, 1200)
        return link

    def test_tenPercentEachWay(self) -> None:
        link = self._transfer(0.1, 10)
        stats = link.sessions[0].stats
        self.assertGreater(stats.retransmissions, 1000)
        self.assertGreater(stats.lossRate, 0.0)

    def test_thirtyPercentEachWay(self) -> None:
        self._transfer(0.3, 30)


class PathSwitch(SynchronousTestCase):

    def test_switchMidStream(self) -> None:
        """Path 1 goes dark mid-stream; after PathDead both ends move to path 2
        (slower) and the stream completes exactly once, in order."""
        messages = stream(5, 2000, 20000)
        link = pair(seed=5, loss=0.02, latency=0.01, jitter=0.002)
        a, b = link.sessions
        feeder = Feeder(0, messages)
        link.beforeStep.append(feeder)
        unreliable = [numbered(100000 + i, 300) for i in range(200)]
        state = {"path": 1, "darkAt": None}

        def sendUnreliable(link: Link) -> None:
            if link.steps % 7 == 0 and unreliable:
                b.send(unreliable.pop(), link.now, U)

        def path1Dies(src, data):
            if state["path"] == 1 and len(link.events[1]) >= 700:
                state["darkAt"] = state["darkAt"] or link.now
                return True
            return False

        link.drop = path1Dies
        link.run(lambda lk: any(isinstance(e, PathDead) for e in lk.events[0]))
        delivered = len(link.events[1])
        self.assertLess(delivered, len(messages))
        state["path"] = 2
        link.latency = (0.06, 0.06)
        a.pathChanged(link.now)
        b.pathChanged(link.now)
        link.beforeStep.append(sendUnreliable)
        link.run(lambda lk: len(lk.messages(1)) >= len(messages), maxTime=1e4)
        self.assertEqual(link.messages(1), [m[0] for m in messages])
        got = link.messages(0, U)
        self.assertGreater(len(got), 100)
        self.assertEqual(len(got), len(set(got)))
        self.assertLess(abs(a.stats.srtt - 0.12), 0.03)

    def test_switchWithoutWaitingForDead(self) -> None:
        """A switch while data is in flight resends it on the new path at once."""
        link = pair(latency=0.05)
        a, b = link.sessions
        for i in range(300):
            a.send(numbered(i, 1000), 0.0)
        link.run(lambda lk: len(lk.events[1]) >= 50)
        link.drop = lambda src, data: link.latency[0] == 0.05
        link.settle(0.01)
        link.latency = (0.02, 0.02)
        a.pathChanged(link.now)
        b.pathChanged(link.now)
        switched = link.now
        link.run(lambda lk: len(lk.events[1]) == 300)
        self.assertEqual(link.messages(1), [numbered(i, 1000) for i in range(300)])
        self.assertLess(link.now - switched, 2.0)
