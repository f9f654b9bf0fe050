"""Running a sans-I/O core on a reactor.

A core decides what to send (C{datagramsToSend(now)}), when it wants to wake
up (C{nextTimeout()}, C{handleTimeout(now)}) and what happened
(C{nextEvent()}). L{CoreDriver} moves what it emits to a transmit function,
keeps one timer armed on the injected reactor, and hands events to a
callback. Work triggered in one reactor turn is flushed together.
"""

from __future__ import annotations

from typing import Callable


class CoreDriver:
    """Drives one sans-I/O core.

    @param transmit: called with each item of C{core.datagramsToSend(now)}.
    @param deliver: called with each event of C{core.nextEvent()}.
    """

    def __init__(self, reactor, core, transmit: Callable, deliver: Callable) -> None:
        self.reactor = reactor
        self.core = core
        self.transmit = transmit
        self.deliver = deliver
        self.closed = False
        self._timer = None
        self._timerAt = None
        self._flushCall = None

    def flush(self) -> None:
        """Send everything the core has ready, hand out its events, re-arm its timer."""
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        if self.closed:
            return
        transmit = self.transmit
        for item in self.core.datagramsToSend(self.reactor.seconds()):
            transmit(item)
        self.drainEvents()
        self._armTimer()

    def scheduleFlush(self) -> None:
        """Flush at the end of this reactor turn (once, however often asked)."""
        if self._flushCall is None and not self.closed:
            self._flushCall = self.reactor.callLater(0, self.flush)

    def drainEvents(self) -> None:
        nextEvent = self.core.nextEvent
        event = nextEvent()
        while event is not None:
            self.deliver(event)
            if self.closed:
                return
            event = nextEvent()

    def close(self) -> None:
        """Stop driving: cancel every call; the core gets no more calls from here."""
        self.closed = True
        for call in (self._timer, self._flushCall):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._flushCall = self._timerAt = None

    def _armTimer(self) -> None:
        """Make sure the timer fires by the core's next timeout.

        A timer already due no later is left alone, however much later the
        core now wants to wake up: it fires early, finds nothing due and
        re-arms. That keeps the busy path free of cancelled calls.
        """
        when = self.core.nextTimeout()
        if when is None:
            return
        armedAt = self._timerAt
        if armedAt is not None:
            if armedAt <= when:
                return
            self._timer.cancel()
        self._timerAt = when
        self._timer = self.reactor.callLater(
            max(0.0, when - self.reactor.seconds()), self._timeout)

    def _timeout(self) -> None:
        self._timer = None
        self._timerAt = None
        if self.closed:
            return
        self.core.handleTimeout(self.reactor.seconds())
        self.flush()
