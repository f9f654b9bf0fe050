"""The client's UDP path to the server: hello until acknowledged, then
pings, and loss after a silence; sans-I/O.

States (L{ServerUdpState}) and what moves between them::

    UNCONFIRMED --helloAcknowledged--> CONFIRMED
    CONFIRMED   --nothing heard over UDP for more than lostAfter--> LOST
    LOST        --helloAcknowledged--> CONFIRMED

From L{ServerPath.start}, and again on entering LOST, the client sends a
UDP_HELLO (its HostID, the server's token, padding) at once, then after
C{helloFirstInterval}, the gap doubling up to C{helloMaxInterval}, until an
acknowledgement. While CONFIRMED it looks at the path on a fixed grid,
every C{pingInterval} from L{ServerPath.start} (as a C{LoopingCall} started
then would): LOST if nothing came over UDP for more than C{lostAfter}, else
a UDP_PING. Every change of state is a L{ServerUdpStateChanged} event.

Each ping carries a timestamp from the path's L{ServerClock} and the round
trip measured so far; the server's answers, over UDP and TCP, are the
clock's samples (L{ServerClock.pongReceived}). On first confirmation the
path also sends C{syncPings} pings C{syncInterval} apart, so that the clock
has a few samples to choose from at once rather than after several
keepalives.

Drive it like the other cores (see L{proud_twisted._glue.coredriver}): after
every input send what L{ServerPath.datagramsToSend} returns (plain
datagrams for the server, to be sealed and sent by the glue), read
L{ServerPath.nextEvent} until None, and call L{ServerPath.handleTimeout} at
L{ServerPath.nextTimeout}.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from proud_twisted.client.servertime import ServerClock
from proud_twisted.constants import ServerUdpState
from proud_twisted.rudp.events import Value
from proud_twisted.wire.datagrams import encodeDatagram

HELLO_PADDING: Final = bytes(64)
"""What pads a UDP_HELLO, so that the server's answer is never larger."""


@dataclass(frozen=True)
class ServerPathConfig:
    """Timings of the UDP path to the server; see the module docstring."""

    helloFirstInterval: float = 0.1
    helloMaxInterval: float = 3.0
    pingInterval: float = 3.0
    lostAfter: float = 10.0
    syncPings: int = 0
    syncInterval: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.helloFirstInterval <= self.helloMaxInterval:
            raise ValueError("need 0 < helloFirstInterval <= helloMaxInterval")
        if self.pingInterval <= 0 or self.lostAfter <= 0:
            raise ValueError("need pingInterval > 0 and lostAfter > 0")
        if self.syncPings < 0 or self.syncInterval <= 0:
            raise ValueError("need syncPings >= 0 and syncInterval > 0")


class ServerUdpStateChanged(Value):
    """The UDP path to the server is now in C{state}."""

    __match_args__ = ("state",)
    __slots__ = __match_args__

    def __init__(self, state: ServerUdpState) -> None:
        self.state: Final = state


class ServerPath:
    """The UDP path of the client C{hostID}, which the server gave C{token}."""

    def __init__(self, hostID: int, token: bytes,
                 config: ServerPathConfig = ServerPathConfig()) -> None:
        self.hostID = hostID
        self.token = token
        self.config = config
        self.clock = ServerClock()
        self._syncLeft = config.syncPings
        self._syncAt: float | None = None
        self.state = ServerUdpState.UNCONFIRMED
        self.publicAddress: tuple[str, int] | None = None
        self.closed = False
        self._startedAt: float | None = None
        self._lastHeard = 0.0
        self._helloAt: float | None = None
        self._helloInterval = config.helloFirstInterval
        self._tickAt: float | None = None
        self._outbox: list[bytes] = []
        self._events: deque[ServerUdpStateChanged] = deque()

    # Inputs

    def start(self, now: float) -> None:
        """Joined: say hello now, and start the grid of path checks."""
        if self.closed or self._startedAt is not None:
            return
        self._startedAt = self._lastHeard = now
        self._sayHello(now)

    def helloAcknowledged(self, publicAddress: tuple[str, int], now: float) -> None:
        """The server acknowledged a hello: our address as it sees it."""
        if self.closed:
            return
        self.heard(now)
        self.publicAddress = publicAddress
        self._helloAt = None
        if self.state is not ServerUdpState.CONFIRMED and self._startedAt is not None:
            self._tickAt = self._nextTick(now)
            if self._syncLeft:
                self._syncAt = now
            self._enter(ServerUdpState.CONFIRMED)

    def heard(self, now: float) -> None:
        """Something authentic came from the server over UDP."""
        self._lastHeard = max(self._lastHeard, now)

    def challenged(self, challenge: bytes, now: float) -> None:
        """The server checks that our address is ours: answer from it."""
        if not self.closed:
            self._outbox.append(encodeDatagram(
                "UDP_CHALLENGE_RESPONSE", hostID=self.hostID, challenge=challenge))

    def close(self) -> None:
        """Send nothing more and want no timer."""
        self.closed = True
        self._helloAt = self._tickAt = self._syncAt = None
        self._outbox.clear()

    # The sans-I/O loop

    def nextEvent(self) -> ServerUdpStateChanged | None:
        return self._events.popleft() if self._events else None

    def nextTimeout(self) -> float | None:
        times = [t for t in (self._helloAt, self._tickAt, self._syncAt) if t is not None]
        return min(times) if times else None

    def handleTimeout(self, now: float) -> None:
        if self._tickAt is not None and now >= self._tickAt:
            self._tickAt = self._nextTick(now)
            if now - self._lastHeard > self.config.lostAfter:
                self._tickAt = self._syncAt = None
                self._enter(ServerUdpState.LOST)
                self._sayHello(now)
            else:
                self._ping(now)
        if self._syncAt is not None and now >= self._syncAt:
            self._syncLeft -= 1
            self._syncAt = now + self.config.syncInterval if self._syncLeft else None
            self._ping(now)
        if self._helloAt is not None and now >= self._helloAt:
            self._sayHello(now)

    def datagramsToSend(self, now: float) -> list[bytes]:
        """Hellos, pings and challenge answers queued for the server."""
        datagrams, self._outbox = self._outbox, []
        return datagrams

    # Internals

    def _ping(self, now: float) -> None:
        self._outbox.append(encodeDatagram("UDP_PING", hostID=self.hostID,
                                           timestamp=self.clock.pingSent(now),
                                           rtt=self.clock.reportedRtt))

    def _sayHello(self, now: float) -> None:
        """Queue a UDP_HELLO, and the next one after the current interval."""
        self._outbox.append(encodeDatagram("UDP_HELLO", hostID=self.hostID,
                                           token=self.token, padding=HELLO_PADDING))
        self._helloAt = now + self._helloInterval
        self._helloInterval = min(self._helloInterval * 2, self.config.helloMaxInterval)

    def _enter(self, state: ServerUdpState) -> None:
        self.state = state
        self._helloInterval = self.config.helloFirstInterval
        self._events.append(ServerUdpStateChanged(state))

    def _nextTick(self, now: float) -> float:
        """The first point of the check grid after C{now} (LoopingCall's rule)."""
        assert self._startedAt is not None
        interval = self.config.pingInterval
        untilNext = interval - (now - self._startedAt) % interval
        return now + (untilNext if now + untilNext != now else interval)
