"""Moving clients between the servers of a cluster: the move tokens (pure).

The source server makes a token for one client and one target and hands it
to the target through the cluster and to the client in C{MOVE}; the target
admits the client that shows it (C{MOVE_ARRIVE}) once, before it expires.
The target keeps what other servers sent the client meanwhile and sends it
on once the client is in.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from typing import Any

from proud_twisted.constants import ResumeRefusal
from proud_twisted.errors import ResumeRefused

DEFAULT_MOVE_TIMEOUT = 10.0
"""Seconds a move token lives, and a move may take: the client closes one
connection and opens another (TCP, the secure handshake: about three round
trips, well under a second even on a slow mobile network), with room for a
reconnection attempt or two if the first is lost."""
MAX_HELD_BYTES = 1024 * 1024
"""Bytes of messages a target keeps for a client on its way (the same as a
client's output bound, C{maxClientOutput}): past it the move is given up."""


def newMoveToken() -> bytes:
    return os.urandom(16)


@dataclass
class Arrival:
    """A client on its way here: who sends it, its token, its ticket, and
    what was sent to it meanwhile (C{(payload, mode, priority, channel)})."""

    source: str
    token: bytes
    ticket: bytes
    expires: float
    held: list = field(default_factory=list)
    timer: Any = None               # forgets the arrival when its time is up
    heldBytes: int = 0


class Arrivals:
    """The clients a target server expects (see the module)."""

    def __init__(self) -> None:
        self._expected: dict[int, Arrival] = {}

    def expect(self, hostID: int, arrival: Arrival) -> None:
        self._expected[hostID] = arrival

    def all(self) -> list:
        return list(self._expected.values())

    def __contains__(self, hostID: int) -> bool:
        return hostID in self._expected

    def hold(self, hostID: int, message: tuple, size: int) -> bool:
        """Keep C{message} for C{hostID}; False if too much is held (the
        arrival is dropped then)."""
        arrival = self._expected[hostID]
        if arrival.heldBytes + size > MAX_HELD_BYTES:
            del self._expected[hostID]
            return False
        arrival.held.append(message)
        arrival.heldBytes += size
        return True

    def admit(self, hostID: int, token: bytes, now: float) -> Arrival:
        """The arrival C{token} proves, taken (a token works once); else
        L{ResumeRefused} (C{BAD_MOVE_TOKEN}), and the arrival stays."""
        arrival = self._expected.get(hostID)
        if arrival is None or arrival.expires <= now:
            raise ResumeRefused(ResumeRefusal.BAD_MOVE_TOKEN,
                                f"no move of host {hostID} expected (never, used, "
                                "or expired)")
        if not hmac.compare_digest(arrival.token, token):
            raise ResumeRefused(ResumeRefusal.BAD_MOVE_TOKEN,
                                f"wrong move token for host {hostID}")
        del self._expected[hostID]
        return arrival

    def drop(self, hostID: int, arrival: Arrival) -> bool:
        """Forget C{arrival} of C{hostID} (its time ran out) if still expected."""
        if self._expected.get(hostID) is arrival:
            del self._expected[hostID]
            return True
        return False
