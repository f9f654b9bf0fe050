"""The congestion window: slow start, then NewReno-style AIMD."""

from __future__ import annotations

from proud_twisted.rudp.config import SessionConfig


class CongestionWindow:
    """How many bytes may be in flight.

    Grows by the bytes acknowledged in slow start and by about one MTU per
    window in congestion avoidance; shrinks at most once per recovery period
    (losses of packets sent before the period began are forgiven), in
    proportion to the share of datagrams recently lost, and by half at the
    most (as DCTCP scales its response to the share of marked packets).
    A queue that overflows drops much of a window at once and is answered
    in full; the odd loss of a noisy wireless link costs a few per cent, so
    the window stays wide where halving at every loss would starve it.  Repeated
    timeouts drop it to ``minWindow`` but leave ``ssthresh`` at half the
    window before the trouble, so slow start brings throughput back quickly.
    """

    def __init__(self, config: SessionConfig) -> None:
        self._mtu = config.mtu
        self._initial = config.initialWindow
        self._min = config.minWindow
        self._max = config.maxWindow
        self.reset()

    def reset(self) -> None:
        """Start over as on a fresh path."""
        self.window = float(self._initial)
        self.ssthresh = float("inf")
        self.recoveryStart = float("-inf")
        self._collapsed = False

    def onAcked(self, size: int, timeSent: float) -> None:
        self._collapsed = False
        if timeSent <= self.recoveryStart:
            return
        window = self.window
        if window < self.ssthresh:
            window += size
        else:
            window += self._mtu * size / window
        self.window = min(window, self._max)

    def onLost(self, timeSent: float, now: float, lossRate: float = 1.0) -> None:
        """A packet sent at ``timeSent`` was declared lost, with the recent
        share of datagrams lost at ``lossRate`` (counting this one)."""
        if timeSent <= self.recoveryStart:
            return
        self.recoveryStart = now
        self.ssthresh = max(self.window * max(0.5, 1 - lossRate / 2), self._min)
        self.window = self.ssthresh

    def onPersistentCongestion(self, now: float) -> None:
        """Timeouts in a row with nothing acknowledged."""
        if not self._collapsed:
            self._collapsed = True
            self.ssthresh = max(self.window / 2, self._min)
        self.window = float(self._min)
        self.recoveryStart = now
