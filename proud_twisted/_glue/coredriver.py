"""Running a sans-I/O core on a reactor.

Every core (L{ReliableSession}, L{PathState}, L{HolePunch}, L{ServerPath})
keeps one convention, aioquic's:

  - Input methods (C{receiveDatagram(..., now)}, C{send(...)},
    C{startPunching(now)}, ...) take the time and return nothing.
  - Everything the core sends, replies included, leaves through
    C{datagramsToSend(now)}.
  - It wants C{handleTimeout(now)} at C{nextTimeout()} (None: no timer).
  - What happened comes out of C{nextEvent()} until it returns None, each
    event an instance of a L{proud_twisted.rudp.events.Value} subclass (so
    are the effects of the pure group table, L{proud_twisted.server.groups}).

L{CoreDriver} moves what a core emits to a transmit function, keeps one timer
armed on the injected reactor, and hands events to a callback; a subclass
adds the core's input methods, each passing the reactor's time, then
flushing (at once, or at the end of the turn). Work triggered in one reactor
turn is flushed together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from twisted.logger import Logger

MAX_PASSES: Final = 16
"""Passes one L{TurnEnd} run makes over work queued while it runs; anything
queued after that waits for the next turn."""


class TurnEnd:
    """Runs the calls queued during a reactor turn once it is done, all from
    one C{callLater(0)}, in the order queued.

    A call queued by one of them runs in the same pass: a session flushed at
    the end of the turn hands its frames to a relay batch, which leaves right
    after, not one turn later. Share one among the drivers of a host.
    """

    log = Logger()

    def __init__(self, reactor) -> None:
        self.reactor: Any = reactor
        self._queue: list[Callable[[], None]] = []
        self._call: Any = None
        self._running = False

    def add(self, call: Callable[[], None]) -> None:
        self._queue.append(call)
        if self._call is None and not self._running:
            self._call = self.reactor.callLater(0, self._run)

    def cancel(self) -> None:
        """Forget what is queued (when everything using it has closed)."""
        self._queue = []
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _run(self) -> None:
        self._call = None
        self._running = True
        try:
            for _ in range(MAX_PASSES):
                queued, self._queue = self._queue, []
                if not queued:
                    return
                for call in queued:
                    try:
                        call()
                    except Exception:
                        self.log.failure("end-of-turn call {call!r} failed", call=call)
        finally:
            self._running = False
            if self._queue and self._call is None:
                self._call = self.reactor.callLater(0, self._run)


class CoreDriver:
    """Drives one sans-I/O core.

    @param transmit: called with each item of C{core.datagramsToSend(now)}.
    @param deliver: called with each event of C{core.nextEvent()}.
    @param turnEnd: the L{TurnEnd} its deferred flushes run from (one of its
        own if not given).
    """

    def __init__(self, reactor, core, transmit: Callable, deliver: Callable,
                 turnEnd: TurnEnd | None = None) -> None:
        self.reactor: Any = reactor
        self.core: Any = core
        self.transmit = transmit
        self.deliver = deliver
        self.closed = False
        self._timer: Any = None
        self._timerAt: float | None = None
        self._ownTurnEnd = turnEnd is None
        self._turnEnd = TurnEnd(reactor) if turnEnd is None else turnEnd
        self._flushQueued = False

    def input(self, method: Callable[..., None], *args: Any) -> None:
        """Give the core an input: call C{method(*args, now)}, then flush.

        C{method} is one of the core's input methods, e.g.
        C{driver.input(path.candidatesChanged, candidates)}.
        """
        method(*args, self.reactor.seconds())
        self.flush()

    def flush(self) -> None:
        """Send everything the core has ready, hand out its events, re-arm its timer."""
        self._flushQueued = False
        if self.closed:
            return
        transmit = self.transmit
        for item in self._datagramsToSend(self.reactor.seconds()):
            transmit(item)
        self.drainEvents()
        self._armTimer()

    def _datagramsToSend(self, now: float) -> list:
        """C{core.datagramsToSend(now)} (a typed core's driver calls it natively)."""
        return self.core.datagramsToSend(now)

    def _nextEvent(self) -> Any:
        return self.core.nextEvent()

    def _nextTimeout(self) -> float | None:
        return self.core.nextTimeout()

    def scheduleFlush(self) -> None:
        """Flush at the end of this reactor turn (once, however often asked)."""
        if not self._flushQueued and not self.closed:
            self._flushQueued = True
            self._turnEnd.add(self._queuedFlush)

    def _queuedFlush(self) -> None:
        if self._flushQueued:
            self.flush()

    def drainEvents(self) -> None:
        event = self._nextEvent()
        while event is not None:
            self.deliver(event)
            if self.closed:
                return
            event = self._nextEvent()

    def close(self) -> None:
        """Stop driving: cancel every call; the core gets no more calls from here."""
        self.closed = True
        self._flushQueued = False
        if self._ownTurnEnd:
            self._turnEnd.cancel()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._timerAt = None

    def _armTimer(self) -> None:
        """Make sure the timer fires by the core's next timeout.

        A timer already due no later is left alone, however much later the
        core now wants to wake up: it fires early, finds nothing due and
        re-arms. That keeps the busy path free of cancelled calls.
        """
        when = self._nextTimeout()
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
