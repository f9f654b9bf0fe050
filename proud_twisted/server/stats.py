"""Counters a server keeps about what it carried and what it refused."""

from dataclasses import asdict, dataclass


@dataclass
class ServerStats:
    """Monotonic counters; read them any time, e.g. for metrics.

    C{framesRelayed} counts every session frame forwarded between peers:
    user messages, and also acknowledgements, punch requests and resends.
    """

    clientsJoined: int = 0
    clientsLeft: int = 0
    clientsTimedOut: int = 0
    joinsRefused: int = 0
    relayRequests: int = 0
    framesRelayed: int = 0
    relayBytes: int = 0
    relayRejected: int = 0
    malformedMessages: int = 0
    oversizedMessages: int = 0
    spoofedDatagrams: int = 0
    malformedDatagrams: int = 0
    failedHandshakes: int = 0
    handshakeTimeouts: int = 0
    unauthenticatedRefused: int = 0
    amplificationRefused: int = 0
    relayRateLimited: int = 0
    relayToDeparted: int = 0
    """Frames to a host that stopped sharing a group moments ago (dropped, not reported)."""
    hackSuspicions: int = 0
    loginErrors: int = 0
    loginTimeouts: int = 0
    outputDropped: int = 0
    """Unreliable messages dropped because their client was not reading."""
    slowConsumers: int = 0
    udpChallenges: int = 0
    rttReportsRejected: int = 0
    """Keepalives whose round-trip figure was no time (negative, not a
    number, over a minute): the figure was ignored, the keepalive answered."""

    def asDict(self) -> dict[str, int]:
        return asdict(self)
