"""Round-trip time estimation and the retransmission timeout (RFC 6298)."""

from __future__ import annotations

from typing import Final

from proud_twisted.rudp.config import SessionConfig

GRANULARITY: Final = 0.001
"""The clock granularity G of RFC 6298: RTO >= SRTT + G."""


class RttEstimator:
    """SRTT, RTTVAR and RTO from unambiguous samples.

    Every datagram carries a fresh packet number, so a sample always belongs to
    exactly one transmission and Karn's ambiguity never arises.
    """

    def __init__(self, config: SessionConfig) -> None:
        self._initialRto = config.initialRto
        self._minRto = config.minRto
        self._maxRto = config.maxRto
        self._ackDelay = config.delayedAckTime
        self.reset()

    def reset(self) -> None:
        """Forget every sample (a new path has an unknown RTT)."""
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.latest: float | None = None
        self.minRtt = float("inf")
        self.rto = self._initialRto

    def sample(self, rtt: float, ackDelay: float = 0.0) -> None:
        """Fold in one measured round trip; ``ackDelay`` is what the peer
        reports it held the acknowledgement, subtracted unless that would
        take the sample below the smallest RTT seen (RFC 9002 5.3)."""
        self.latest = rtt
        if rtt < self.minRtt:
            self.minRtt = rtt
        if rtt - ackDelay >= self.minRtt:
            rtt -= ackDelay
        srtt, rttvar = self.srtt, self.rttvar
        if srtt is None or rttvar is None:
            srtt, rttvar = rtt, rtt / 2
        else:
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - rtt)
            srtt = 0.875 * srtt + 0.125 * rtt
        self.srtt, self.rttvar = srtt, rttvar
        rto = srtt + max(GRANULARITY, 4 * rttvar)
        self.rto = min(max(rto, self._minRto), self._maxRto)

    def backedOff(self, count: int, peerMayDelay: bool = True) -> float:
        """The retransmission timer after ``count`` expiries in a row: RTO
        plus, if ``peerMayDelay``, the peer's acknowledgement delay (as RFC
        9002's PTO), doubled each time, never above maxRto."""
        base = self.rto + self._ackDelay if peerMayDelay else self.rto
        return min(base * (1 << min(count, 30)), self._maxRto)

    def lossDelay(self) -> float:
        """How long after a later packet was acknowledged an earlier one is
        declared lost (RFC 9002 time threshold, 9/8 of an RTT)."""
        srtt, latest = self.srtt, self.latest
        if srtt is None or latest is None:
            return self.rto
        return max(1.125 * max(srtt, latest), GRANULARITY)
