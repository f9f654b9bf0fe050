"""Running a sans-I/O L{ReliableSession} on a reactor (see L{CoreDriver})."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from proud_twisted._glue.coredriver import CoreDriver, TurnEnd
from proud_twisted.rudp import (
    DeliveryMode,
    Priority,
    ReceiveBudget,
    ReliableSession,
    SessionConfig,
    SessionStats,
)

# Room left in each 1200-byte UDP datagram for relay headers and the AEAD record.
DATAGRAM_HEADROOM: Final = 64
# Sessions inside the framework: datagrams are sealed with an AEAD (or rely on
# the UDP checksum when encryption is off), so the session's own CRC is off.
DEFAULT_SESSION_CONFIG = SessionConfig(mtu=1200 - DATAGRAM_HEADROOM, checksum=False)


class SessionDriver(CoreDriver):
    """Drives one L{ReliableSession}.

    @param transmit: called with each datagram the session emits; the owner
        points it at the current path (relay, direct) with L{pathChanged}.
    @param deliver: called with each event (L{MessageReceived}, L{PathDead},
        L{PathAlive}).
    @param receiveBudget: a L{ReceiveBudget} shared with other sessions (a
        server's), capping the sum of their receive buffers; L{close} gives
        this session's charge back.
    """

    def __init__(self, reactor, transmit: Callable[[bytes], None],
                 deliver: Callable[[object], None],
                 config: SessionConfig = SessionConfig(),
                 turnEnd: TurnEnd | None = None,
                 receiveBudget: ReceiveBudget | None = None) -> None:
        session = ReliableSession(config, reactor.seconds(), receiveBudget)
        super().__init__(reactor, session, transmit, deliver, turnEnd)
        self.session: ReliableSession = session
        self._receiving = False

    def _datagramsToSend(self, now: float) -> list[bytes]:
        return self.session.datagramsToSend(now)

    def _nextEvent(self) -> object:
        return self.session.nextEvent()

    def _nextTimeout(self) -> float | None:
        return self.session.nextTimeout()

    @property
    def stats(self) -> SessionStats:
        return self.session.stats

    def send(self, payload: bytes, mode: DeliveryMode = DeliveryMode.RELIABLE,
             priority: Priority = Priority.MEDIUM, channel: int = 0) -> None:
        """Queue a message; it goes out at the end of this reactor turn (or,
        sent while a received datagram is handled, right after it)."""
        self.session.send(payload, self.reactor.seconds(), mode, priority, channel)
        if not self._receiving:
            self.scheduleFlush()

    def receiveDatagram(self, data: bytes) -> None:
        """Feed a datagram from the peer (raises L{ProtocolError} if malformed).

        Data it lets go (replies sent from the event callbacks, or what the
        window now admits) leaves at once, its acknowledgement riding along;
        an acknowledgement alone waits for the end of the reactor turn, so
        that one covers every datagram read in that turn.
        """
        session = self.session
        session.receiveDatagram(data, self.reactor.seconds())
        self._receiving = True
        try:
            self.drainEvents()
        finally:
            self._receiving = False
        if session.dataReady:
            self.flush()
        else:
            self.scheduleFlush()

    def pathChanged(self, transmit: Callable[[bytes], None]) -> None:
        """Carry the session's datagrams on another path from now on."""
        self.transmit = transmit
        self.session.pathChanged(self.reactor.seconds())
        self.flush()

    def close(self) -> None:
        self.session.close()
        super().close()
