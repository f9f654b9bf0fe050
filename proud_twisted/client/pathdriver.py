"""Running a peer's sans-I/O L{PathState} on a reactor (see L{CoreDriver})."""

from __future__ import annotations

from proud_twisted.client.pathstate import PathState
from proud_twisted._glue.coredriver import CoreDriver, TurnEnd


class PathDriver(CoreDriver):
    """Drives one pair's L{PathState}; C{sendTo(data, address)} is the UDP socket."""

    def __init__(self, reactor, path: PathState, sendTo, deliver,
                 turnEnd: TurnEnd | None = None) -> None:
        super().__init__(reactor, path, lambda item: sendTo(*item), deliver, turnEnd)
        self.path = path
        self._sendTo = sendTo

    def startPunching(self) -> None:
        self.path.startPunching(self.reactor.seconds())
        self.flush()

    def receiveDatagram(self, data: bytes, addr) -> None:
        """A probe, answer, ping or pong from C{addr} (L{ProtocolError} if malformed)."""
        replies = self.path.receiveDatagram(data, addr, self.reactor.seconds())
        for reply, address in replies or ():
            self._sendTo(reply, address)
        self.flush()

    def candidatesChanged(self, candidates) -> None:
        self.path.candidatesChanged(candidates, self.reactor.seconds())
        self.flush()

    def noteRelayedTraffic(self) -> None:
        self.path.noteRelayedTraffic(self.reactor.seconds())
        self.flush()

    def forceRelay(self, on: bool) -> None:
        self.path.forceRelay(on, self.reactor.seconds())
        self.flush()
