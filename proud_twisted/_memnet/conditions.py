"""
Link conditions, NAT types and traffic counters of the memory network.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from random import Random


class NATType(enum.Enum):
    """
    RFC 3489 NAT behaviours.

    The first three map endpoint-independently (one public port per inside
    address and port); C{SYMMETRIC} maps each destination (address, port) to
    a fresh, unpredictable public port.
    """

    FULL_CONE = "full-cone"
    ADDRESS_RESTRICTED = "address-restricted"
    PORT_RESTRICTED = "port-restricted"
    SYMMETRIC = "symmetric"


@dataclass(frozen=True)
class LinkConditions:
    """
    What a one-way path does to traffic.

    UDP datagrams are lost with probability C{loss}, sent twice with
    probability C{duplicate}, and delayed by C{latency} plus a uniform sample
    in [-C{jitter}, +C{jitter}] (never below zero).  Datagrams on one path
    otherwise arrive in the order sent; with probability C{reorder} one is
    held back a further C{reorderDelay} seconds so that later ones overtake
    it.

    TCP ignores C{loss}, C{duplicate} and C{reorder}: its data gets the delay
    but keeps its order.

    C{blocked} cuts the path: UDP sent on it is dropped, TCP data (and
    connection attempts) wait until the path is unblocked.
    """

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    latency: float = 0.0
    jitter: float = 0.0
    reorderDelay: float = 0.05
    blocked: bool = False

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability, not {value!r}")
        for name in ("latency", "jitter", "reorderDelay"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must not be negative, not {value!r}")

    def sampleDelay(self, rng: Random) -> float:
        """
        One delay drawn from C{latency} and C{jitter}.
        """
        if not self.jitter:
            return self.latency
        return max(0.0, self.latency + rng.uniform(-self.jitter, self.jitter))


class NetworkStats(Counter):
    """
    Counts of what the network did, keyed C{"<kind>.<what>"}.

    UDP: C{udp.sent} (accepted by C{write}), C{udp.duplicated} (extra
    copies), C{udp.reordered} (held back), C{udp.delivered} (handed to
    C{datagramReceived}), C{udp.dropped} (all drops) and C{udp.dropped.<why>}
    with C{why} one of C{loss}, C{blocked}, C{hairpin}, C{unroutable},
    C{filtered} (by a NAT), C{noListener}, C{closed} (written on a stopped
    port).

    TCP: C{tcp.connects}, C{tcp.accepted}, C{tcp.refused}, C{tcp.sent} and
    C{tcp.delivered} (data chunks), C{tcp.stalled} (chunks held by a blocked
    path), C{tcp.dropped.<why>} (connection attempts that went nowhere).

    Missing keys read as zero.
    """

    def drop(self, kind: str, why: str) -> None:
        """
        Count one dropped C{kind} ("udp" or "tcp") item, for reason C{why}.
        """
        self[f"{kind}.dropped"] += 1
        self[f"{kind}.dropped.{why}"] += 1
