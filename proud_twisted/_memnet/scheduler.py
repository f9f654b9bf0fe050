"""
Time for the memory network: a faster L{Clock} and the network's own event
queue on it.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import insort
from collections.abc import Callable
from typing import Any

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.logger import Logger


def _baseTime(call: DelayedCall) -> float:
    return call.time


class NetworkClock(Clock):
    """
    A L{Clock} whose C{calls} stay sorted as they are added and run, instead
    of being re-sorted on every operation.  Equal times run in the order they
    were scheduled, as with L{Clock}.

    Like the real reactor, calls are kept in order of their original time;
    one pushed later by C{reset} or C{delay} moves when it reaches the head.
    """

    def callLater(self, delay: float, callable: Callable[..., object],
                  *args: object, **kw: object) -> IDelayedCall:
        call = DelayedCall(self.rightNow + delay, callable, args, kw,
                           self.calls.remove, self._moved, self.seconds)
        insort(self.calls, call, key=_baseTime)
        return call

    def _moved(self, call: DelayedCall) -> None:
        self.calls.remove(call)
        insort(self.calls, call, key=_baseTime)

    def nextTime(self, ignore: IDelayedCall | None = None) -> float | None:
        """
        When the earliest call (other than C{ignore}) is due, or C{None}.
        """
        calls = self.calls
        i = 0
        while True:
            while len(calls) > i and calls[i].delayed_time:
                call = calls.pop(i)
                call.activate_delay()
                insort(calls, call, key=_baseTime)
            if len(calls) > i and calls[i] is ignore:
                i += 1
                continue
            return calls[i].time if len(calls) > i else None

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        while True:
            when = self.nextTime()
            if when is None or when > self.rightNow:
                return
            call = self.calls.pop(0)
            call.called = 1
            call.func(*call.args, **call.kw)


class EventQueue:
    """
    Timed network events (deliveries) on a heap.

    L{MemoryNetwork.advance} runs them directly; for code that drives the
    clock itself, one L{IDelayedCall} (the timer) stands on the clock no
    later than the earliest event.  Once the queue is empty the timer is
    gone: nothing of the network's is left on the clock.
    """

    log = Logger()

    #: Events run at one instant before the queue declares a livelock.
    maxBatch = 1_000_000

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Callable[..., Any], tuple]] = []
        self._order = itertools.count()
        self.timer: IDelayedCall | None = None
        self._timerTime = 0.0
        self._running = False

    def __len__(self) -> int:
        return len(self._heap)

    def nextTime(self) -> float | None:
        """
        When the earliest event is due, or C{None}.
        """
        return self._heap[0][0] if self._heap else None

    def at(self, when: float, f: Callable[..., Any], *args: Any) -> None:
        """
        Run C{f(*args)} at virtual time C{when} (or at once, if past).
        """
        heapq.heappush(self._heap, (when, next(self._order), f, args))
        if not self._running and (self.timer is None or when < self._timerTime):
            self._arm()

    def after(self, delay: float, f: Callable[..., Any], *args: Any) -> None:
        """
        Run C{f(*args)} C{delay} seconds from now.
        """
        self.at(self._clock.seconds() + delay, f, *args)

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self._heap:
            self._timerTime = self._heap[0][0]
            delay = max(0.0, self._timerTime - self._clock.seconds())
            self.timer = self._clock.callLater(delay, self._fire)

    def _settle(self) -> None:
        # An early timer is harmless (it finds nothing due and re-arms); a
        # missing or late one, or one left on an empty queue, is not.
        if not self._heap or self.timer is None or self._timerTime > self._heap[0][0]:
            self._arm()

    def _fire(self) -> None:
        self.timer = None
        self.runDue(max(self._clock.seconds(), self._timerTime))

    def runDue(self, horizon: float) -> None:
        """
        Run every event due at or before C{horizon}, earliest first.
        """
        heap = self._heap
        self._running = True
        count = 0
        try:
            while heap and heap[0][0] <= horizon:
                _, _, f, args = heapq.heappop(heap)
                count += 1
                if count > self.maxBatch:
                    raise RuntimeError(
                        f"memory network livelock: over {self.maxBatch} "
                        f"events at t={horizon}"
                    )
                try:
                    f(*args)
                except Exception:
                    self.log.failure("Unhandled error delivering network event")
        finally:
            self._running = False
            self._settle()
