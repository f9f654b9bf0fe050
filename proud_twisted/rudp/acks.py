"""Which packet numbers arrived, and when to acknowledge them."""

from __future__ import annotations

from bisect import bisect_right
from typing import Final

from proud_twisted.rudp.frames import ACK_DELAY_UNIT, ACK_NOW, packAck

MAX_RANGES: Final = 64
"""Ranges remembered; older ones are forgotten and anything below them is
treated as already seen (a late packet there is dropped unacknowledged, so its
reliable data is retransmitted)."""
MAX_ACK_RANGES: Final = 16
"""Ranges reported in one ACK frame (the newest ones)."""
REPORTS: Final = 3
"""ACK frames a range below the newest appears in before it is left out:
by then the peer has almost surely heard of it, and a hole left by a lost
packet (whose data goes again under a new number) never fills."""
MAX_UNACKED: Final = 1024
"""Packets seen but deliberately not acknowledged, remembered so that a
duplicate of one is still recognised."""
ACK_EVERY: Final = 2
"""Acknowledge at once when this many ack-eliciting packets are waiting."""


def _low(r):
    return r[0]


class ReceivedPackets:
    """Received packet numbers as sorted ``[low, high, timesReported]``
    ranges, duplicate detection, and the delayed-acknowledgement timer."""

    def __init__(self, delayedAckTime: float) -> None:
        self._delayedAckTime = delayedAckTime
        self._ranges: list[list[int]] = []
        self._floor = 0
        self._unacked: set[int] = set()
        self._topTime = 0.0
        self.largest = -1
        self.ackPending = False
        self.ackDeadline: float | None = None
        self._waiting = 0

    def isNew(self, pn: int) -> bool:
        """Whether ``pn`` was never seen (and is not too old to tell)."""
        ranges = self._ranges
        if pn < self._floor or pn in self._unacked:
            return False
        if not ranges or pn > ranges[-1][1]:
            return True
        i = bisect_right(ranges, pn, key=_low) - 1
        return i < 0 or pn > ranges[i][1]

    def record(self, pn: int, now: float, elicits: int, acknowledge: bool = True) -> None:
        """Note a new packet (``isNew(pn)`` must be true).  With ``acknowledge``
        false it is remembered only as seen: its reliable data was refused."""
        outOfOrder = pn != self.largest + 1
        if pn > self.largest:
            self.largest = pn
        if not acknowledge:
            self._rememberUnacked(pn)
            return
        ranges = self._ranges
        if ranges and ranges[-1][1] + 1 == pn:
            ranges[-1][1] = pn
            self._topTime = now
        else:
            self._insert(pn, now)
        if elicits:
            self.ackPending = True
            self._waiting += 1
            if outOfOrder or self._waiting >= ACK_EVERY or elicits == ACK_NOW:
                self.ackDeadline = now
            elif self.ackDeadline is None:
                self.ackDeadline = now + self._delayedAckTime

    def _insert(self, pn: int, now: float) -> None:
        ranges = self._ranges
        if ranges:
            top = ranges[-1]
            if pn == top[1] + 1:
                top[1] = pn
                self._topTime = now
                return
            if pn > top[1]:
                ranges.append([pn, pn, 0])
                self._topTime = now
                self._trim()
                return
        else:
            ranges.append([pn, pn, 0])
            self._topTime = now
            return
        i = bisect_right(ranges, pn, key=_low)
        left = ranges[i - 1] if i > 0 else None
        right = ranges[i] if i < len(ranges) else None
        if left is not None and left[1] + 1 == pn:
            left[1] = pn
            left[2] = 0
            if right is not None and right[0] == pn + 1:
                left[1] = right[1]
                del ranges[i]
        elif right is not None and right[0] == pn + 1:
            right[0] = pn
            right[2] = 0
        else:
            ranges.insert(i, [pn, pn, 0])
            self._trim()

    def _trim(self) -> None:
        ranges = self._ranges
        if len(ranges) > MAX_RANGES:
            del ranges[0]
            self._floor = ranges[0][0]
            if self._unacked:
                self._unacked = {p for p in self._unacked if p >= self._floor}

    def _rememberUnacked(self, pn: int) -> None:
        unacked = self._unacked
        unacked.add(pn)
        if len(unacked) > MAX_UNACKED:
            oldest = min(unacked)
            unacked.discard(oldest)
            self._floor = max(self._floor, oldest + 1)

    def acknowledgeSoon(self, now: float) -> None:
        """Send an acknowledgement with the next datagram (e.g. on a new path)."""
        if self._ranges:
            self.ackPending = True
            self.ackDeadline = now

    def buildAck(self, now: float) -> bytes:
        """The ACK frame for the newest ranges; clears the pending state."""
        self.ackPending = False
        self.ackDeadline = None
        self._waiting = 0
        ranges = self._ranges
        low, high, _ = ranges[-1]
        first = high - low
        gaps = []
        if first > 0xFFFF:
            first = 0xFFFF
        else:
            for i in range(len(ranges) - 2, -1, -1):
                entry = ranges[i]
                if entry[2] >= REPORTS:
                    continue
                lo, hi, reports = entry
                gap = low - hi - 2
                if gap > 0xFFFF:
                    break
                entry[2] = reports + 1
                length = hi - lo
                if length > 0xFFFF:
                    gaps.append((gap, 0xFFFF))
                    break
                gaps.append((gap, length))
                if len(gaps) == MAX_ACK_RANGES:
                    break
                low = lo
        delay = min(int((now - self._topTime) / ACK_DELAY_UNIT), 0xFFFF)
        return packAck(high, max(delay, 0), first, gaps)
