"""Plain value objects handed to applications."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from proud_twisted.constants import ErrorType
from proud_twisted.rudp.config import DeliveryMode
from proud_twisted.rudp.session import SessionStats

Address = tuple[str, int]
"""A C{(host, port)} pair."""

Targets = int | Iterable[int]
"""What C{send} takes: a HostID (a client, a peer, the server or a P2P group)
or an iterable of them."""


@dataclass(frozen=True)
class ErrorInfo:
    """What went wrong, for ``onWarning``."""

    errorType: ErrorType
    hostID: int = 0
    comment: str = ""

    def __str__(self) -> str:
        where = f" (host {self.hostID})" if self.hostID else ""
        return f"{self.errorType.value}{where}: {self.comment}"


@dataclass(frozen=True)
class MessageContext:
    """How a user message arrived.

    C{relayed} is the path of the datagram whose arrival delivered the
    message: for one held back behind an earlier message, the datagram that
    released it.
    """

    sender: int
    reliable: bool
    relayed: bool = False
    mode: DeliveryMode | None = None
    channel: int = 0


@dataclass(frozen=True)
class ClientInfo:
    """A snapshot of one client as the server sees it."""

    hostID: int
    tcpAddress: Address
    udpAddress: Address | None
    lanAddress: Address | None
    joinedGroups: frozenset[int] = field(default_factory=frozenset)
    userData: bytes = b""
    rtt: float | None = None
    """The client's smoothed round trip to the server in seconds, as its
    keepalives report it (None before the first); a client can misstate
    only its own."""


@dataclass(frozen=True)
class P2PGroupInfo:
    """A snapshot of one P2P group."""

    groupHostID: int
    members: frozenset[int]


@dataclass(frozen=True)
class PeerInfo:
    """What a client knows of one peer (a host it shares a group with)."""

    hostID: int
    relayed: bool
    udpAddress: Address | None
    lanAddress: Address | None
    joinedGroups: frozenset[int] = field(default_factory=frozenset)
    directAddress: Address | None = None
    stats: SessionStats | None = None
    rtt: float | None = None
    """The smoothed round trip to the peer in seconds (C{stats.srtt}), on
    whichever path the pair is; None before the first sample."""


@dataclass(frozen=True)
class P2PConnectionStats:
    """Pairs in a P2P group, and how many of them talk directly."""

    totalPairs: int
    directPairs: int
