"""Packets in flight: acknowledgement bookkeeping and loss detection."""

from __future__ import annotations

from typing import Final

from proud_twisted.rudp.fifo import Fifo

PACKET_THRESHOLD: Final = 3
"""A packet is lost once one sent this many packets later is acknowledged
(RFC 9002 kPacketThreshold)."""


class SentPacket:
    """An ack-eliciting datagram that was sent and not yet resolved."""

    __slots__ = ("done", "frames", "pn", "size", "timeSent")

    def __init__(self, pn: int, timeSent: float, size: int, frames: list) -> None:
        self.pn = pn
        self.timeSent = timeSent
        self.size = size
        self.frames = frames
        self.done = False


class SentPackets:
    """Ack-eliciting packets in flight, by packet number and in send order.

    Work per acknowledgement is proportional to what it newly acknowledges
    or declares lost, not to the number of packets in flight.
    """

    def __init__(self) -> None:
        self._byPn: dict[int, SentPacket] = {}
        self._order: Fifo[SentPacket] = Fifo()
        self.bytesInFlight = 0
        self.largestAcked = -1
        self.lastSentTime = 0.0

    def __len__(self) -> int:
        return len(self._byPn)

    def add(self, pn: int, timeSent: float, size: int, frames: list) -> None:
        packet = SentPacket(pn, timeSent, size, frames)
        self._byPn[pn] = packet
        self._order.append(packet)
        self.bytesInFlight += size
        self.lastSentTime = timeSent

    def _resolve(self, packet: SentPacket) -> None:
        del self._byPn[packet.pn]
        packet.done = True
        self.bytesInFlight -= packet.size

    def onAck(self, ranges: list[tuple[int, int]]) -> list[SentPacket]:
        """Resolve the packets in ``ranges`` ((low, high), highest first);
        return those newly acknowledged, highest first."""
        byPn = self._byPn
        acked: list[SentPacket] = []
        if not byPn:
            return acked
        order = self._order
        while order.first().done:
            order.popleft()
        lowest = order.first().pn
        clipped = []
        span = 0
        for low, high in ranges:
            if high < lowest:
                break
            if low < lowest:
                low = lowest
            clipped.append((low, high))
            span += high - low + 1
        if span <= 2 * len(byPn):
            for low, high in clipped:
                for pn in range(high, low - 1, -1):
                    packet = byPn.get(pn)
                    if packet is not None:
                        self._resolve(packet)
                        acked.append(packet)
        else:
            clipped.reverse()
            i = 0
            for packet in order:
                pn = packet.pn
                while i < len(clipped) and clipped[i][1] < pn:
                    i += 1
                if i == len(clipped):
                    break
                if not packet.done and clipped[i][0] <= pn:
                    self._resolve(packet)
                    acked.append(packet)
            acked.reverse()
        if acked and acked[0].pn > self.largestAcked:
            self.largestAcked = acked[0].pn
        return acked

    def detectLosses(self, now: float, lossDelay: float) -> tuple[list[SentPacket], float | None]:
        """Declare lost what the packet or time threshold says is lost; return
        the lost packets and when the next one would be, if it is pending."""
        lost: list[SentPacket] = []
        order = self._order
        largest = self.largestAcked
        while order:
            packet = order.first()
            if packet.done:
                order.popleft()
                continue
            if packet.pn > largest:
                break
            lossTime = packet.timeSent + lossDelay
            if packet.pn <= largest - PACKET_THRESHOLD or lossTime <= now:
                order.popleft()
                self._resolve(packet)
                lost.append(packet)
                continue
            return lost, lossTime
        return lost, None

    def oldest(self, count: int) -> list[SentPacket]:
        """Resolve and return up to ``count`` of the oldest packets in flight."""
        found = []
        for packet in self._order:
            if not packet.done:
                found.append(packet)
                if len(found) == count:
                    break
        for packet in found:
            self._resolve(packet)
        return found

    def clear(self) -> list[SentPacket]:
        """Resolve and return every packet in flight, oldest first."""
        packets = [p for p in self._order if not p.done]
        for packet in packets:
            packet.done = True
        self._byPn.clear()
        self._order.clear()
        self.bytesInFlight = 0
        return packets
