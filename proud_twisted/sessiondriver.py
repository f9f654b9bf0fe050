"""Running a sans-I/O L{ReliableSession} on a reactor.

The session decides what to send and when to wake up; this glue only moves
its datagrams to a transmit function, schedules its timer with the injected
reactor and hands its events to a callback. Sends made in one reactor turn
are flushed together, so small messages share datagrams.
"""

from __future__ import annotations

from typing import Callable

from proud_twisted.rudp import DeliveryMode, Priority, ReliableSession, SessionConfig


class SessionDriver:
    """Drives one L{ReliableSession}.

    @param transmit: called with each datagram the session emits; the owner
        points it at the current path (relay, direct).
    @param deliver: called with each event (L{MessageReceived}, L{PathDead},
        L{PathAlive}).
    """

    def __init__(self, reactor, transmit: Callable[[bytes], None],
                 deliver: Callable[[object], None],
                 config: SessionConfig = SessionConfig()) -> None:
        self.reactor = reactor
        self.transmit = transmit
        self.deliver = deliver
        self.session = ReliableSession(config, reactor.seconds())
        self._timer = None
        self._timerAt = None
        self._flushCall = None

    @property
    def stats(self):
        return self.session.stats

    @property
    def closed(self) -> bool:
        return self.session.closed

    def send(self, payload: bytes, mode: DeliveryMode = DeliveryMode.RELIABLE,
             priority: Priority = Priority.MEDIUM, channel: int = 0) -> None:
        """Queue a message; it goes out at the end of this reactor turn."""
        self.session.send(payload, self.reactor.seconds(), mode, priority, channel)
        self._scheduleFlush()

    def receiveDatagram(self, data: bytes) -> None:
        """Feed a datagram from the peer (raises L{ProtocolError} if malformed)."""
        self.session.receiveDatagram(data, self.reactor.seconds())
        self._drainEvents()
        self._scheduleFlush()

    def pathChanged(self, transmit: Callable[[bytes], None]) -> None:
        """Carry the session's datagrams on another path from now on."""
        self.transmit = transmit
        self.session.pathChanged(self.reactor.seconds())
        self.flush()

    def flush(self) -> None:
        """Send everything the session has ready and re-arm its timer."""
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        session = self.session
        if session.closed:
            return
        transmit = self.transmit
        for datagram in session.datagramsToSend(self.reactor.seconds()):
            transmit(datagram)
        self._armTimer()

    def close(self) -> None:
        self.session.close()
        for call in (self._timer, self._flushCall):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._flushCall = self._timerAt = None

    def _scheduleFlush(self) -> None:
        if self._flushCall is None and not self.session.closed:
            self._flushCall = self.reactor.callLater(0, self.flush)

    def _armTimer(self) -> None:
        when = self.session.nextTimeout()
        if when == self._timerAt:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timerAt = when
        if when is not None:
            delay = max(0.0, when - self.reactor.seconds())
            self._timer = self.reactor.callLater(delay, self._timeout)

    def _timeout(self) -> None:
        self._timer = None
        self._timerAt = None
        if self.session.closed:
            return
        self.session.handleTimeout(self.reactor.seconds())
        self._drainEvents()
        self.flush()

    def _drainEvents(self) -> None:
        nextEvent = self.session.nextEvent
        event = nextEvent()
        while event is not None:
            self.deliver(event)
            if self.session.closed:
                return
            event = nextEvent()
