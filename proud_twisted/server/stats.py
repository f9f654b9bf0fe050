"""Counters a server keeps about what it carried and what it refused."""

from dataclasses import asdict, dataclass, field


@dataclass
class ServerStats:
    """Monotonic counters; read them any time, e.g. for metrics.

    C{framesRelayed} counts every session frame forwarded between peers:
    user messages, and also acknowledgements, punch requests and resends.
    The dicts count by kind (a name the server chooses, never one a client
    sends): C{joinRefusals} by L{JoinRefusal} name, C{hackReports} by
    L{HackKind} name.
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
    # Connection recovery
    clientsOffline: int = 0
    """Joined clients whose connection dropped and whose session waits to resume."""
    clientsResumed: int = 0
    recoveryExpired: int = 0
    """Offline clients that left because their recovery window ran out."""
    recoveryRefused: int = 0
    """Dropped clients that left at once: more offline clients than allowed."""
    resumesRefused: int = 0
    """Resume attempts refused: unknown session, wrong proof (see the log)."""
    resendOverflows: int = 0
    """Sessions ended because their unacknowledged reliable output grew too big."""
    # Moves between the servers of a cluster
    clientsMovedOut: int = 0
    """Clients moved to another server (admitted there)."""
    clientsMovedIn: int = 0
    """Clients admitted here by a move."""
    movesFailed: int = 0
    """Moves from here given up (the client did not arrive in time, ...)."""
    movesRefused: int = 0
    """Arrivals refused here: a forged, used or expired move token (see the log)."""
    rttReportsRejected: int = 0
    """Keepalives whose round-trip figure was no time (negative, not a
    number, over a minute): the figure was ignored, the keepalive answered."""
    groupJoins: int = 0
    """Clients added to a P2P group (each member of a created group counts)."""
    groupLeaves: int = 0
    """Clients out of a P2P group: left, removed with it, or disconnected."""
    punchSuccesses: int = 0
    """A client reported a direct path to a peer (each side reports its own)."""
    punchFailures: int = 0
    """A client reported that hole punching to a peer gave up."""
    directPathsLost: int = 0
    """A client reported that its direct path to a peer fell back to relay."""
    joinRefusals: dict[str, int] = field(default_factory=dict)
    hackReports: dict[str, int] = field(default_factory=dict)

    def count(self, counts: dict[str, int], kind: str) -> None:
        """Add one to C{counts[kind]} (one of the dicts above)."""
        counts[kind] = counts.get(kind, 0) + 1

    def asDict(self) -> dict[str, int | dict[str, int]]:
        return asdict(self)
