"""A simulated datagram link between two ReliableSessions, on a virtual clock.

Used by the other test_rudp modules; the tests at the bottom check the link.
"""

from __future__ import annotations

import heapq
import math
import random

from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.rudp import DeliveryMode, MessageReceived, ReliableSession, SessionConfig


def drainEvents(session: ReliableSession) -> list:
    """Every event the session has for us now."""
    out = []
    event = session.nextEvent()
    while event is not None:
        out.append(event)
        event = session.nextEvent()
    return out


class Link:
    """Moves datagrams between two sessions with seeded loss, duplication,
    latency, jitter, reordering and an optional bottleneck rate.

    Jitter keeps each direction in order, as most real paths do; with
    probability ``reorder`` a datagram is instead held back by up to
    ``reorderDelay`` and overtaken.

    Time only moves to the next delivery or the next session timeout.
    Per-direction settings are (a->b, b->a) pairs or one value for both.
    ``drop(src, data)`` may veto any datagram (a dead path, a firewall).
    """

    def __init__(self, a: ReliableSession, b: ReliableSession, seed: int = 0,
                 loss=0.0, duplicate=0.0, latency=0.01, jitter=0.0, reorder=0.0,
                 reorderDelay=0.02, rate=None, queueDelay=0.1, now: float = 0.0) -> None:
        self.sessions = (a, b)
        self.now = now
        self.rng = random.Random(seed)
        self.loss = self._pair(loss)
        self.duplicate = self._pair(duplicate)
        self.latency = self._pair(latency)
        self.jitter = self._pair(jitter)
        self.reorder = self._pair(reorder)
        self.reorderDelay = reorderDelay
        self.rate = self._pair(rate)
        self.queueDelay = queueDelay
        self.drop = None
        self.events: tuple[list, list] = ([], [])
        self.sent = [0, 0]
        self.largest = 0
        self.steps = 0
        self.beforeStep = []
        self._busyUntil = [now, now]
        self._lastArrival = [now, now]
        self._heap: list = []
        self._order = 0

    @staticmethod
    def _pair(value):
        return tuple(value) if isinstance(value, (tuple, list)) else (value, value)

    def messages(self, index: int, mode=None) -> list[bytes]:
        """Payloads session ``index`` received, optionally of one mode."""
        return [e.payload for e in self.events[index]
                if isinstance(e, MessageReceived) and (mode is None or e.mode == mode)]

    def pump(self) -> None:
        """Let both sessions send what they may."""
        for src, session in enumerate(self.sessions):
            for data in self.datagramsFrom(session):
                self._transmit(src, data)

    def datagramsFrom(self, session: ReliableSession) -> list[bytes]:
        """What C{session} sends now (a subclass may check it)."""
        return session.datagramsToSend(self.now)

    def _transmit(self, src: int, data: bytes) -> None:
        self.sent[src] += 1
        self.largest = max(self.largest, len(data))
        rng = self.rng
        if self.drop is not None and self.drop(src, data):
            return
        if self.loss[src] and rng.random() < self.loss[src]:
            return
        depart = self.now
        rate = self.rate[src]
        if rate:
            depart = max(depart, self._busyUntil[src]) + len(data) / rate
            if depart - self.now > self.queueDelay:
                return
            self._busyUntil[src] = depart
        copies = 2 if self.duplicate[src] and rng.random() < self.duplicate[src] else 1
        for _ in range(copies):
            arrive = depart + self.latency[src] + rng.random() * self.jitter[src]
            if self.reorder[src] and rng.random() < self.reorder[src]:
                arrive += rng.random() * self.reorderDelay
            else:
                arrive = max(arrive, self._lastArrival[src])
                self._lastArrival[src] = arrive
            self._order += 1
            heapq.heappush(self._heap, (arrive, self._order, 1 - src, data))

    def _drain(self) -> None:
        for index, session in enumerate(self.sessions):
            self.events[index].extend(drainEvents(session))

    def step(self) -> bool:
        """Advance to the next thing that happens; False once nothing will."""
        self.steps += 1
        for hook in self.beforeStep:
            hook(self)
        self.pump()
        when = math.inf
        if self._heap:
            when = self._heap[0][0]
        for session in self.sessions:
            timeout = session.nextTimeout()
            if timeout is not None and timeout < when:
                when = timeout
        if when == math.inf:
            return False
        self.now = max(self.now, when)
        heap = self._heap
        while heap and heap[0][0] <= self.now:
            _, _, dst, data = heapq.heappop(heap)
            self.sessions[dst].receiveDatagram(data, self.now)
        for session in self.sessions:
            timeout = session.nextTimeout()
            if timeout is not None and timeout <= self.now:
                session.handleTimeout(self.now)
        self._drain()
        return True

    def run(self, until, maxTime: float = 1e6, maxSteps: int = 10**8) -> None:
        """Step until ``until(link)`` is true; fail on stall or time-out."""
        while not until(self):
            if not self.step():
                self.pump()
                if not self._heap and not until(self):
                    raise AssertionError(f"link went idle at t={self.now:.3f} before the goal")
            if self.now > maxTime or self.steps > maxSteps:
                raise AssertionError(f"goal not reached by t={self.now:.3f} ({self.steps} steps)")

    def settle(self, duration: float) -> None:
        """Run for ``duration`` virtual seconds (or until idle)."""
        end = self.now + duration
        while self.now < end and self.step():
            pass


class Feeder:
    """Sends a list of (payload, mode, priority, channel) from one session as
    fast as its send queue accepts them; hook it into `Link.beforeStep`."""

    def __init__(self, index: int, messages: list) -> None:
        self.index = index
        self.messages = messages
        self.position = 0

    def __call__(self, link: Link) -> None:
        session = link.sessions[self.index]
        limit = session._config.maxSendQueueBytes
        messages = self.messages
        while self.position < len(messages):
            payload, mode, priority, channel = messages[self.position]
            if session.sendQueueBytes + len(payload) > limit:
                return
            session.send(payload, link.now, mode, priority, channel)
            self.position += 1

    @property
    def done(self) -> bool:
        return self.position == len(self.messages)


def logUniformSizes(rng: random.Random, count: int, largest: int) -> list[int]:
    """``count`` sizes from 1 to ``largest``, uniform in log scale."""
    top = math.log(largest + 1)
    return [min(largest, int(math.exp(rng.random() * top))) for _ in range(count)]


def numbered(index: int, size: int) -> bytes:
    """A payload of ``size`` bytes that names ``index`` (when size allows)."""
    head = index.to_bytes(4, "big")
    return (head * (size // 4 + 1))[:size]


def pair(seed: int = 0, config: SessionConfig | None = None, **linkOptions) -> Link:
    config = config or SessionConfig()
    return Link(ReliableSession(config), ReliableSession(config), seed=seed, **linkOptions)


class LinkTests(SynchronousTestCase):
    """The link itself behaves."""

    def test_lossless(self) -> None:
        link = pair()
        for i in range(50):
            link.sessions[0].send(numbered(i, 100 + i), link.now)
        link.run(lambda lk: len(lk.messages(1)) == 50)
        self.assertEqual(link.messages(1), [numbered(i, 100 + i) for i in range(50)])

    def test_lossDropsSomething(self) -> None:
        link = pair(loss=0.5, seed=3)
        for _i in range(20):
            link.sessions[0].send(b"x", link.now, DeliveryMode.UNRELIABLE)
        link.settle(1.0)
        self.assertLess(len(link.messages(1)), 20)
