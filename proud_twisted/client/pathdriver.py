"""Running a peer's sans-I/O L{PathState} on a reactor (see L{CoreDriver})."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from proud_twisted._glue.coredriver import CoreDriver, TurnEnd
from proud_twisted.client.pathstate import PathState

Address = tuple[Any, ...]
"""A UDP address as Twisted gives it: C{(host, port)}, or longer for IPv6."""


class PathDriver(CoreDriver):
    """Drives one pair's L{PathState} (its C{state}).

    Each input passes the reactor's time to the state and flushes: what the
    state then has to send (answers, probes, pings) goes to
    C{sendTo(data, address)}, the UDP socket.
    """

    def __init__(self, reactor: Any, state: PathState,
                 sendTo: Callable[[bytes, Address], None],
                 deliver: Callable[[object], None], turnEnd: TurnEnd | None = None) -> None:
        super().__init__(reactor, state, lambda item: sendTo(*item), deliver, turnEnd)
        self.state: PathState = state

    def startPunching(self) -> None:
        self.state.startPunching(self.reactor.seconds())
        self.flush()

    def receiveDatagram(self, data: bytes, addr: Address) -> None:
        """A probe, answer, ping or pong from C{addr} (L{ProtocolError} if malformed)."""
        self.state.receiveDatagram(data, addr, self.reactor.seconds())
        self.flush()

    def candidatesChanged(self, candidates: Iterable[Address]) -> None:
        self.state.candidatesChanged(candidates, self.reactor.seconds())
        self.flush()

    def noteRelayedTraffic(self) -> None:
        self.state.noteRelayedTraffic(self.reactor.seconds())
        self.flush()

    def forceRelay(self, on: bool) -> None:
        self.state.forceRelay(on, self.reactor.seconds())
        self.flush()
