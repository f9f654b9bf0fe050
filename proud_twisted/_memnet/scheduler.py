"""
The memory network's own event queue, driven by one clock timer.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger


class EventQueue:
    """
    Timed network events (deliveries) on a heap, with at most one
    L{IDelayedCall} on the clock: the earliest event's.  When the queue is
    empty nothing of the network's is left on the clock.
    """

    log = Logger()

    #: Events run at one instant before the queue declares a livelock.
    maxBatch = 1_000_000

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Callable[..., Any], tuple]] = []
        self._order = itertools.count()
        self._timer: IDelayedCall | None = None
        self._timerTime = 0.0
        self._running = False

    def __len__(self) -> int:
        return len(self._heap)

    def now(self) -> float:
        """
        The clock's time.
        """
        return self._clock.seconds()

    def at(self, when: float, f: Callable[..., Any], *args: Any) -> None:
        """
        Run C{f(*args)} at virtual time C{when} (or at once, if past).
        """
        heapq.heappush(self._heap, (when, next(self._order), f, args))
        if not self._running and (self._timer is None or when < self._timerTime):
            self._arm()

    def after(self, delay: float, f: Callable[..., Any], *args: Any) -> None:
        """
        Run C{f(*args)} C{delay} seconds from now.
        """
        self.at(self._clock.seconds() + delay, f, *args)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._heap:
            self._timerTime = self._heap[0][0]
            delay = max(0.0, self._timerTime - self._clock.seconds())
            self._timer = self._clock.callLater(delay, self._run)

    def _run(self) -> None:
        self._timer = None
        horizon = max(self._clock.seconds(), self._timerTime)
        self._running = True
        count = 0
        try:
            while self._heap and self._heap[0][0] <= horizon:
                _, _, f, args = heapq.heappop(self._heap)
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
            self._arm()
